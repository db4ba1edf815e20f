"""Running pipelines: replicas under supervision, admission, the handle, the service.

- ``replicas``: the actors that run a plug-in instance (thread or loop);
- ``admission``: the ``Room`` that bounds frames queued or in process per pipeline;
- ``handle``: ``PipelineHandle``, what a session sends frames to;
- ``service``: ``PipelineService``, init/get/reload/shutdown of named pipelines.

The plug-ins themselves (the contract and the built-in kinds) are in ``actors.plugins``.
"""
