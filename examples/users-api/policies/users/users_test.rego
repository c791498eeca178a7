package users_test

import data.users

now_seconds := time.now_ns() / 1000000000

admin_of(tenant) := {
	"roles": ["admin"],
	"tenant": tenant,
	"subject": "u-admin",
	"route": {"id": "users-delete", "params": {"id": "u-bob"}},
}

test_admin_deletes_user_of_own_tenant if {
	users.allow_delete with input as admin_of("acme")
}

test_admin_of_other_tenant_may_not_delete if {
	not users.allow_delete with input as admin_of("globex")
}

test_non_admin_may_not_delete if {
	not users.allow_delete with input as {"roles": ["user"], "tenant": "acme", "route": {"params": {"id": "u-bob"}}}
}

test_unknown_user_judged_by_tenant_param if {
	users.allow_delete with input as {"roles": ["admin"], "tenant": "initech", "route": {"params": {"id": "u-new", "tenant": "initech"}}}
}

test_contradicting_tenant_param_denies if {
	not users.allow_delete with input as {"roles": ["admin"], "tenant": "globex", "route": {"params": {"id": "u-bob", "tenant": "globex"}}}
}

test_user_reads_own_record if {
	users.allow_read with input as {"subject": "u-bob", "route": {"params": {"id": "u-bob"}}}
}

test_user_may_not_read_other_record if {
	not users.allow_read with input as {"subject": "u-bob", "route": {"params": {"id": "u-alice"}}, "scopes": ["read:users"]}
}

test_read_all_scope_reads_any_record if {
	users.allow_read with input as {"subject": "u-bob", "route": {"params": {"id": "u-alice"}}, "scopes": ["read:users:all"]}
}

test_write_with_recent_mfa if {
	users.allow_write with input as {
		"subject": "u-bob",
		"route": {"params": {"id": "u-bob"}},
		"token": {"amr": ["pwd", "mfa"], "auth_time": now_seconds - 60},
	}
}

test_write_with_old_mfa_denied if {
	not users.allow_write with input as {
		"subject": "u-bob",
		"route": {"params": {"id": "u-bob"}},
		"token": {"amr": ["pwd", "mfa"], "auth_time": now_seconds - 3600},
	}
}

test_write_without_mfa_denied if {
	not users.allow_write with input as {
		"subject": "u-bob",
		"route": {"params": {"id": "u-bob"}},
		"token": {"amr": ["pwd"], "auth_time": now_seconds - 60},
	}
}

test_reader_without_pii_scope_gets_mask if {
	decision := users.read_decision with input as {"subject": "u-bob", "route": {"params": {"id": "u-bob"}}, "scopes": []}
	decision.allow
	decision.obligations.mask == ["email", "phone"]
}
