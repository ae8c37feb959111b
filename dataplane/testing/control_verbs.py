"""
Control-plane verbs for a test, at the current virtual time, and waiting for what they cause.

``net.scale_out()``, ``net.fail_se("se-1")`` and the rest do what the same
action does in a scenario's ``[[events]]``, with the same refusals: the
controller carries it out now, logs ``<action>.refused`` with a reason if it
will not, and the verb returns that reason (None when accepted).  They
return at once; what they cause follows in virtual time, so a test settles,
advances or waits for it: ``net.wait_for("scale_out.completed")`` runs the
clock until that event is logged.  A name the scenario could not have held
(an unknown SE, a server that is not in the pool) is a mistake in the test
and raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from ..clock import NS_PER_S
from ..clock import seconds as ns_from_seconds
from ..scenario import Event, Server
from ..wire import frames


class ControlVerbs:
    """Mixed into ``DataplaneNet``: it provides ``network``, ``sim`` and ``_events_taken``."""

    network: Any
    sim: Any
    _events_taken: set[int]

    # -- control-plane actions ---------------------------------------------------

    def scale_out(self, se: str | None = None, vs: str | None = None) -> str | None:
        """Scale ``vs`` out (the only VS if None), to ``se`` if given (else a free SE, else a new one)."""
        return self._act("scale_out", se=self._se(se) if se is not None else None, vs=self._vs(vs))

    def scale_in(self, se: str, vs: str | None = None) -> str | None:
        return self._act("scale_in", se=self._se(se), vs=self._vs(vs))

    def migrate(self, src: str, dst: str | None = None, vs: str | None = None) -> str | None:
        """Migrate ``vs`` from ``src`` to ``dst``, or to a new SE the controller creates (``dst`` None)."""
        if dst is None:
            return self._act("migrate", from_se=self._se(src), to_new_se=True, vs=self._vs(vs))
        return self._act("migrate", from_se=self._se(src), to_se=self._se(dst), vs=self._vs(vs))

    def fail_se(self, se: str) -> str | None:
        return self._act("fail_se", se=self._se(se))

    def recover_se(self, se: str) -> str | None:
        return self._act("recover_se", se=self._se(se))

    def fail_server(self, server: str) -> str | None:
        return self._act("fail_server", server=self._server(server))

    def recover_server(self, server: str) -> str | None:
        return self._act("recover_server", server=self._server(server))

    def fail_host(self, host: str) -> str | None:
        return self._act("fail_host", host=self._host(host))

    def create_se(self, name: str, host: str) -> str | None:
        """Have an administrator create and connect SE ``name`` on ``host`` (read or no access)."""
        if name in self._known_ses():
            raise ValueError(f"SE {name!r} already exists")
        return self._act("create_se", name=name, host=host)

    def _act(self, action: str, **fields: Any) -> str | None:
        controller = self.network.controller
        before = len(controller.refusals)
        controller.dispatch(Event(at=self.sim.now / NS_PER_S, action=action, **fields))
        refusals = controller.refusals[before:]
        return refusals[-1]["reason"] if refusals else None

    def _vs(self, name: str | None) -> str:
        return self.network.service(name).name  # ValueError names the virtual services

    def _known_ses(self) -> set[str]:
        controller = self.network.controller
        return set(controller.lifecycle.states) | set(self.network.se_names)

    def _se(self, name: str) -> str:
        known = self._known_ses()
        if name not in known:
            raise ValueError(f"unknown SE {name!r} (known: {', '.join(sorted(known))})")
        return name

    def _server(self, server: str) -> Server:
        for pool_server in self.network.servers:
            if server in (pool_server.endpoint, pool_server.name):
                return Server(frames.ip_text(pool_server.ip), pool_server.port)
        names = ", ".join(f"{s.name} ({s.endpoint})" for s in self.network.servers)
        raise ValueError(f"{server!r} is not a pool server (pool: {names})")

    def _host(self, host: str) -> str:
        controller = self.network.controller
        hosts = set(controller.group.hosts) | {se.host for se in self.network.service_engines()}
        if host not in hosts:
            raise ValueError(f"unknown host {host!r} (hosts: {', '.join(sorted(hosts))})")
        return host

    # -- events --------------------------------------------------------------------

    def events(self, event_type: str | None = None) -> list[dict]:
        """The control-plane events logged so far (of ``event_type`` only, if given), oldest first."""
        return [e for e in self.network.events if event_type is None or e["type"] == event_type]

    def wait_for(self, event_type: str, timeout: float = 60.0, **fields: Any) -> dict:
        """Run until an event of ``event_type`` (with these field values) is logged; return it.

        Each event is returned once: ``wait_for`` takes the oldest matching event
        no earlier ``wait_for`` returned, so one logged before the call counts too.
        Fails if ``timeout`` virtual seconds pass first, listing the events logged
        since the last event an earlier ``wait_for`` returned; the clock then
        stands at the deadline.
        """
        start = max(self._events_taken, default=-1) + 1
        deadline = self.sim.now + ns_from_seconds(timeout)
        searched = 0
        while True:
            found = self._take_event(event_type, fields, searched)
            if found is not None:
                return found
            searched = len(self.network.events)
            following = self.sim.peek()
            if following is None or following > deadline:
                break
            self.sim.step()
        self.sim.run(until_ns=deadline)
        wanted = event_type + "".join(f" {k}={v!r}" for k, v in fields.items())
        meanwhile = self.network.events[start:]  # since the last event a wait_for returned
        listing = "\n".join(f"  {e['t']:.6f} s {e['type']} " + " ".join(f"{k}={v}" for k, v in e.items()
                                                                      if k not in ("t", "type"))
                            for e in meanwhile[:30]) or "  (none)"
        more = f"\n  ... and {len(meanwhile) - 30} more" if len(meanwhile) > 30 else ""
        raise AssertionError(f"no {wanted} event within {timeout:g} s of virtual time "
                             f"(now {self.sim.now / NS_PER_S:.6f} s); events logged meanwhile:\n{listing}{more}")

    def _take_event(self, event_type: str, fields: dict, searched: int) -> dict | None:
        events = self.network.events
        first = 0 if searched == 0 else searched
        for index in range(first, len(events)):
            event = events[index]
            if index in self._events_taken or event["type"] != event_type:
                continue
            if all(event.get(key) == value for key, value in fields.items()):
                self._events_taken.add(index)
                return event
        return None
