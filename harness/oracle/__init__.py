"""What is right: the float64 reference (forward and backward), the tolerance model, the
expectation of a case (oracle values and tolerances per element), and the checks that run
a backend on a case and judge every output."""
