package cards_test

import data.cards

card_request(subject, card_id) := {
	"subject": subject,
	"route": {"id": "get-card", "params": {"cardId": card_id}},
}

test_holder_of_card_account_owns_card if {
	cards.owns_card with input as card_request("cust-ada", "card-501")
}

test_other_customer_does_not_own_card if {
	not cards.owns_card with input as card_request("cust-ada", "card-502")
}

test_unknown_card_denied if {
	not cards.owns_card with input as card_request("cust-ada", "card-999")
}
