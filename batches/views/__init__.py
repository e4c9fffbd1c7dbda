"""The dashboard's pages, one module per page (see each module's docstring).

`access` finds what a URL names among what the person may see; the pages ask `selectors` what
to show and the model what a batch is; writes go through the modules named for them (actions,
submissions, notices) and are handed to Celery. GET never writes.
"""
