# Ownership rules of the Fictional Pay cards API.
package cards

# A customer may use only the cards of accounts they hold. Each card id
# maps to its account in the data document next to this file, and the
# account's holder comes from the payments data.
default owns_card := false

owns_card if {
	card_id := input.route.params.cardId
	account_id := data.cards.card_accounts[card_id]
	data.payments.account_holders[account_id] == input.subject
}
