package payments_test

import data.payments

account_request(subject, account_id) := {
	"subject": subject,
	"route": {"id": "get-account", "params": {"accountId": account_id}},
}

test_holder_owns_account if {
	payments.owns_account with input as account_request("cust-ada", "acc-1002")
}

test_other_customer_does_not_own_account if {
	not payments.owns_account with input as account_request("cust-grace", "acc-1001")
}

test_unknown_account_denied if {
	not payments.owns_account with input as account_request("cust-ada", "acc-9999")
}

test_request_without_subject_denied if {
	not payments.owns_account with input as {"route": {"params": {"accountId": "acc-1001"}}}
}
