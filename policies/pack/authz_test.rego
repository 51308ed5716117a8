# Unit tests of the baseline pack's functions, run as `opa test` does (every
# rule named test_*), in a separate, time-limited process. They call the
# functions directly: `with input as` is not used (see docs/policies.md).
package ibx.authz_test

import rego.v1

import data.ibx.authz

test_core_needs_he_or_mpc if {
	authz.engine_allowed("core", "he")
	authz.engine_allowed("core", "mpc")
	not authz.engine_allowed("core", "plain")
}

test_general_may_run_plain if authz.engine_allowed("general", "plain")

test_raw_export_only_general if {
	authz.raw_export_allowed("general")
	not authz.raw_export_allowed("important")
	not authz.raw_export_allowed("core")
}

test_core_operations if {
	authz.operation_allowed("core", "mean")
	not authz.operation_allowed("core", "histogram")
	not authz.operation_allowed("core", "regression")
	authz.operation_allowed("general", "regression")
}

test_core_purposes if {
	authz.core_purpose("risk_warning")
	not authz.core_purpose("trade_matching")
}

test_min_cohort if {
	authz.cohort_sufficient(5)
	not authz.cohort_sufficient(4)
}

test_separation_of_duties if {
	authz.other_duty("sysadmin", "policy_approve")
	authz.other_duty("security_officer", "audit_trace")
	authz.other_duty("auditor", "identity_manage")
	not authz.other_duty("security_officer", "policy_approve")
	not authz.other_duty("subbrain", "policy_approve")
}

test_industry_bound_roles if {
	authz.industry_bound("subbrain")
	not authz.industry_bound("auditor")
}

test_vocabulary if {
	authz.known_action("compute")
	not authz.known_action("delete_everything")
	authz.known_role("witness")
	not authz.known_role("root")
}
