from django.db.models import QuerySet

from gtm_api.models import Payment
from neuronx import errors
from neuronx.models import Tenant


def payment_get(*, tenant: Tenant | None, payment_id: str, for_update: bool = False) -> Payment:
    """The tenant's payment (any tenant's when `tenant` is None: internal verification only)."""
    payments = Payment.objects.all() if tenant is None else Payment.objects.filter(tenant=tenant)
    if for_update:
        payments = payments.select_for_update()
    payment = payments.filter(pk=payment_id).first()
    if payment is None:
        raise errors.NotFound(f"No payment {payment_id!r}.")
    return payment


def payment_list(
    *, tenant: Tenant, lead_id: str | None = None, status: str | None = None
) -> QuerySet[Payment]:
    payments = Payment.objects.filter(tenant=tenant)
    if lead_id is not None:
        payments = payments.filter(lead_id=lead_id)
    if status is not None:
        payments = payments.filter(status=status)
    return payments
