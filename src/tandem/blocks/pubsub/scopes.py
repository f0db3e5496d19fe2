"""Topic scoping from component metadata: who may publish or subscribe to which topic.

``publishingScopes`` / ``subscriptionScopes`` read ``"app1=t1;app2=t2,t3;app3="``: a listed
app may use only its topics (an empty list allows none); an unlisted app may use every
topic except ``protectedTopics``. ``allowedTopics`` is a global allow-list on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tandem.blocks.component_metadata import lookup


def _topics(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def _app_scopes(text: str) -> dict[str, frozenset[str]]:
    scopes: dict[str, frozenset[str]] = {}
    for part in text.split(";"):
        app, sep, topics = part.partition("=")
        if sep and app.strip():
            scopes[app.strip()] = scopes.get(app.strip(), frozenset()) | _topics(topics)
    return scopes


@dataclass(frozen=True, slots=True)
class TopicScopes:
    publishing: Mapping[str, frozenset[str]] = field(default_factory=dict)
    subscription: Mapping[str, frozenset[str]] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> TopicScopes:
        return cls(
            publishing=_app_scopes(lookup(metadata, "publishingScopes") or ""),
            subscription=_app_scopes(lookup(metadata, "subscriptionScopes") or ""),
            allowed=_topics(lookup(metadata, "allowedTopics") or ""),
            protected=_topics(lookup(metadata, "protectedTopics") or ""),
        )

    def may_publish(self, app_id: str, topic: str) -> bool:
        return self._allowed(self.publishing, app_id, topic)

    def may_subscribe(self, app_id: str, topic: str) -> bool:
        return self._allowed(self.subscription, app_id, topic)

    def _allowed(self, scopes: Mapping[str, frozenset[str]], app_id: str, topic: str) -> bool:
        if self.allowed and topic not in self.allowed:
            return False
        granted = scopes.get(app_id)
        if granted is not None:
            return topic in granted
        return topic not in self.protected
