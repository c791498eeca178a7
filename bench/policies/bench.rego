# The policy of the benchmark's policy route: a caller may list users when
# its token carries read:users and a well-formed tenant id. It decides what
# tier 1 already checked, so the cost measured is the policy machinery.
package bench

import rego.v1

default allow := false

allow if {
	"read:users" in input.scopes
	regex.match(`^[A-Za-z0-9_-]{1,64}$`, input.token.tenant_id)
}
