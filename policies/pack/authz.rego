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
	known_action(input.action)
	known_role(input.subject.role)
}

# --- functions (also exercised by the test_ rules in authz_test.rego) ---

known_action(action) if vocab.actions[action]

known_role(role) if role in vocab.roles

engine_allowed(classification, engine) if engine in vocab.engines[classification]

operation_allowed(classification, operation) if operation in vocab.operations[classification]

raw_export_allowed(classification) if classification in vocab.raw_export_classifications

core_purpose(purpose) if purpose in vocab.core_purposes

cohort_sufficient(cohort) if cohort >= vocab.min_cohort

# role holds one of the three separated duties and action belongs to another
other_duty(role, action) if {
	owner := vocab.duty_owner[action]
	owner != role
	role in vocab.duty_roles
}

industry_bound(role) if role in vocab.industry_roles

# --- deny rules: each says why ---

deny contains sprintf("raw export of %s data is never allowed", [input.context.classification]) if {
	input.action == "raw_export"
	not raw_export_allowed(input.context.classification)
}

deny contains sprintf("engine %s is not allowed for %s data", [input.context.engine, input.context.classification]) if {
	input.context.engine
	not engine_allowed(input.context.classification, input.context.engine)
}

deny contains sprintf("operation %s is not allowed on %s data", [input.context.operation, input.context.classification]) if {
	input.context.operation
	not operation_allowed(input.context.classification, input.context.operation)
}

deny contains sprintf("purpose %s is not whitelisted for core data", [input.context.purpose]) if {
	input.context.classification == "core"
	not core_purpose(input.context.purpose)
}

deny contains sprintf("cohort %v is below the minimum of %v for core data", [input.context.cohort, vocab.min_cohort]) if {
	input.context.classification == "core"
	not cohort_sufficient(input.context.cohort)
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
	industry_bound(input.subject.role)
	input.subject.industry != input.context.domain
}

deny contains sprintf("separation of duties: %s may not %s", [input.subject.role, input.action]) if {
	other_duty(input.subject.role, input.action)
}
