"""The BentoML service. Not built yet: it arrives with the service issue (#4).

Nothing here serves requests; `bentofile.yaml` and the Dockerfile say so too.
"""
