"""Billing rules: what the connector does in the CRM when an invoice is paid, part-paid, overdue
or voided in Xero. The rules are data (``billing.yaml``, or the file ``BILLING_RULES`` names);
``rules`` loads and validates them and evaluates a document change into actions (pure);
``ledger`` remembers in the sync table what was done, so that nothing is done twice."""

from shared.billing.rules import (
    Action,
    BillingRulesError,
    CommissionBill,
    RecordRevenue,
    RulesFile,
    SetFields,
    Skip,
    evaluate,
    fired_rules,
    load_rules_file,
    rules_file,
)

__all__ = ["Action", "BillingRulesError", "CommissionBill", "RecordRevenue", "RulesFile", "SetFields", "Skip",
           "evaluate", "fired_rules", "load_rules_file", "rules_file"]
