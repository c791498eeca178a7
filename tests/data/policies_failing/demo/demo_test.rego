package demo_test

test_passes if {
	1 + 1 == 2
}

test_fails if {
	1 + 1 == 3
}

test_errors if {
	zero := 0
	1 / zero == 1
}
