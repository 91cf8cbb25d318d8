"""Publish: a built, checked layer zip becomes versioned layers in many regions.

``artifact`` reads what a build left in dist/ (zip, report); ``plan`` checks
the request and plans per region, purely; ``executor`` carries the plan out
through ``aws``, the one AWS client (session and sleep injected); ``manifest``
records each published ARN, written atomically.
"""
