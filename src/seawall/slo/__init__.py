"""SLIs, SLOs, error budgets, burn-rate alerts and the status page (issue 15).

- :mod:`seawall.slo.sli`       what one finished request counts as, per component and tier
- :mod:`seawall.slo.recorder`  counters in time buckets, flushed to the database off the request path
- :mod:`seawall.slo.alerts`    the evaluator: budgets, burn-rate alerts, incidents, webhooks
- :mod:`seawall.slo.export`    OpenSLO v1 and Prometheus rules generated from the same config
The decisions are pure (:mod:`seawall.algorithms.burn_rate`); the status page is
:mod:`seawall.edges.status`.
"""
