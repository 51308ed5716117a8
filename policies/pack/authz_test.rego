# Tests of the vocabulary that the baseline rules read, run as `opa test`
# does (every rule named test_*) in a separate, time-limited process. They
# read data documents directly and never use `with input as` (see
# docs/policies.md); the rules themselves are tested by requests.json.
package ibx.authz_test

import rego.v1

import data.vocab

test_core_needs_he_or_mpc if {
	"he" in vocab.engines.core
	"mpc" in vocab.engines.core
	not "plain" in vocab.engines.core
	not "plain" in vocab.engines.important
}

test_raw_export_only_general if {
	vocab.raw_export_classifications == ["general"]
}

test_core_operations_are_plain_aggregates if {
	every operation in vocab.operations.core {
		operation in {"count", "sum", "mean"}
	}
}

test_core_purposes_are_known_purposes if {
	every purpose in vocab.core_purposes {
		vocab.purposes[purpose]
	}
	not "trade_matching" in vocab.core_purposes
}

test_min_cohort_at_least_five if {
	vocab.min_cohort >= 5
}

test_three_duties_are_separate if {
	{role | some role in vocab.duty_roles} == {"sysadmin", "security_officer", "auditor"}
	vocab.duty_owner.policy_approve == "security_officer"
	vocab.duty_owner.identity_manage == "sysadmin"
	vocab.duty_owner.audit_trace == "auditor"
}

test_every_classification_has_engines_and_operations if {
	every classification, _ in vocab.classifications {
		count(vocab.engines[classification]) > 0
		count(vocab.operations[classification]) > 0
	}
}

test_required_attributes_are_declared if {
	every _, names in vocab.required {
		every name in names {
			vocab.attributes[name]
		}
	}
}
