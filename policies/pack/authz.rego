# ibx baseline attribute rules (Rego v1), evaluated after Casbin's RBAC check.
#
# input = {
#   "subject":  {"name": str, "role": str, "industry": str | null},
#   "action":   str,
#   "resource": {"id": str, "kind": str},
#   "context":  {attribute: value, ...}   (times as integer UNIX seconds)
#   "now":      int (UNIX seconds)
# }
#
# Before any rule runs, the decision point refuses requests with unknown,
# missing or mistyped attributes, values outside their vocabulary, unknown
# actions and roles, and subjects named like a role (vocab.attributes,
# vocab.required, vocab.actions, vocab.roles), so every attribute a rule below
# reads is present, typed and known.
#
# `allow` is a definite true only for a known action by a known role; the
# decision point denies on any non-empty `deny`, on an undefined or false
# `allow`, and on any evaluation error (fail closed).
package ibx.authz

import rego.v1

import data.vocab

default allow := false

allow if {
	vocab.actions[input.action]
	input.subject.role in vocab.roles
}

# The rules below read the vocabulary directly instead of calling helper
# functions: rego-cpp evaluates a function call far more slowly than the same
# expression inline (about a third of the pack's time). The rules are tested by
# the sample requests (requests.json), evaluated as plain input documents; the
# test_ rules in authz_test.rego check the vocabulary they read.

# --- deny rules: each says why ---

deny contains sprintf("raw export of %s data is never allowed", [input.context.classification]) if {
	input.action == "raw_export"
	not input.context.classification in vocab.raw_export_classifications
}

deny contains sprintf("engine %s is not allowed for %s data", [input.context.engine, input.context.classification]) if {
	input.context.engine
	not input.context.engine in vocab.engines[input.context.classification]
}

deny contains sprintf("operation %s is not allowed on %s data", [input.context.operation, input.context.classification]) if {
	input.context.operation
	not input.context.operation in vocab.operations[input.context.classification]
}

deny contains sprintf("purpose %s is not whitelisted for core data", [input.context.purpose]) if {
	input.context.classification == "core"
	not input.context.purpose in vocab.core_purposes
}

deny contains sprintf("cohort %v is below the minimum of %v for core data", [input.context.cohort, vocab.min_cohort]) if {
	input.context.classification == "core"
	input.context.cohort < vocab.min_cohort
}

deny contains "outside the validity window (not yet valid)" if {
	input.now < input.context.valid_from
}

deny contains "outside the validity window (expired)" if {
	input.now >= input.context.valid_until
}

deny contains "the data owner has not consented" if {
	input.context.consented == false
}

deny contains sprintf("%s of %s may act only in its own industry, not %s", [input.subject.role, input.subject.industry, input.context.domain]) if {
	input.subject.role in vocab.industry_roles
	input.subject.industry != input.context.domain
}

deny contains sprintf("separation of duties: %s may not %s", [input.subject.role, input.action]) if {
	# the subject holds one of the three separated duties; the action is another's
	owner := vocab.duty_owner[input.action]
	owner != input.subject.role
	input.subject.role in vocab.duty_roles
}
