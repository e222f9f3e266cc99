"""The bodies of the service's HTTP routes, one module per route group. serving/service.py declares
the routes (method, path, response model) on its one FastAPI app and points each at a function here.

    common    settings, the `authorized` dependency, the service handle, error handlers, metrics calls
    chat      GET /v1/models, POST /v1/chat/completions
    consult   POST /consult, /consult_stream
    feedback  POST /feedback (and the CDS Hooks app's feedback and card records)
    fhir      POST /v1/fhir/patient, GET /cds-services (the discovery document at the spec's exact path)
"""
