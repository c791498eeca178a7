# Ownership rules of the Fictional Pay payments API, evaluated by the
# gateway on the request's input document (route params, subject, ...).
package payments

# A customer may use only the accounts they hold. The holder of each
# account comes from the data document next to this file, which maps an
# account id to the `sub` of its holder's tokens; a real deployment would
# build it from the account system.
default owns_account := false

owns_account if {
	account_id := input.route.params.accountId
	data.payments.account_holders[account_id] == input.subject
}
