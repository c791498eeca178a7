# Authorization rules of the users API, evaluated by the gateway with the
# request input document (method, route params, token claims, tenant...).
package users

# Admins may delete a user of their own tenant only. The user's tenant comes
# from the directory in data; a user missing there is judged by the tenant
# path parameter, and a parameter that contradicts the directory denies.
default allow_delete := false

allow_delete if {
	"admin" in input.roles
	input.tenant == user_tenant
	not tenant_param_contradicts
}

user_tenant := data.users.directory[input.route.params.id].tenant

# The id is bound before the `not` so that a missing id leaves the rule
# undefined in regorus as in OPA.
user_tenant := input.route.params.tenant if {
	user_id := input.route.params.id
	not data.users.directory[user_id]
}

tenant_param_contradicts if {
	input.route.params.tenant != data.users.directory[input.route.params.id].tenant
}

# A user may read their own record; `read:users:all` reads any record.
default allow_read := false

allow_read if input.subject == input.route.params.id

allow_read if "read:users:all" in input.scopes

# Writes need a recent MFA login (`amr` contains `mfa` and `auth_time` is at
# most 10 minutes old) and either the user's own record or an admin of the
# user's tenant.
default allow_write := false

allow_write if {
	mfa_recent
	input.subject == input.route.params.id
}

allow_write if {
	mfa_recent
	allow_delete
}

max_mfa_age_seconds := 600

# Tolerated clock difference for an `auth_time` slightly in the future.
clock_skew_seconds := 60

mfa_recent if {
	"mfa" in input.token.amr
	age := (time.now_ns() / 1000000000) - input.token.auth_time
	age <= max_mfa_age_seconds
	age >= 0 - clock_skew_seconds
}

# A decision object with obligations: readers without `read:users:pii`
# get the contact fields masked.
read_decision := {"allow": allow_read, "obligations": {"mask": mask_fields}}

mask_fields := [] if "read:users:pii" in input.scopes

mask_fields := ["email", "phone"] if {
	scopes := input.scopes
	not "read:users:pii" in scopes
}
