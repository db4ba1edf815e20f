"""Canvas sessions: state, drains, the frame pump, the actor and the service.

- ``state``: ``SessionState``, what outlives the actor's incarnations;
- ``drains``: the ``latest`` and ``all`` frame buffers;
- ``messages``: what the actor handles, the ``Connection`` it answers through and the
  ``Attachment`` a reader feeds frames into;
- ``pump``: ``FramePump``, drain → pipeline → connection, in order;
- ``deps``: ``SessionDeps``, the narrow view of the engine a session gets;
- ``actor``: ``SessionActor``;
- ``service``: ``SessionService``, create/find/authenticate/end sessions.
"""
