"""Parts of the operator benchmark: process accounting, the Kubernetes API, the
simulators and the operator under test, the measurements, and the report."""
