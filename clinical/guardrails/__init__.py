"""Clinical safety guardrails: input checks before the model, output checks after it, and order
checks for CDS Hooks order-select/order-sign (no model). Every check fails closed.

    from clinical.guardrails import check_input, check_output, check_orders
"""

from clinical.guardrails.input_checks import check_input
from clinical.guardrails.models import Finding, InputCheck, add_listeners
from clinical.guardrails.orders import check_orders
from clinical.guardrails.output_checks import check_output

__all__ = ["Finding", "InputCheck", "add_listeners", "check_input", "check_orders", "check_output"]
