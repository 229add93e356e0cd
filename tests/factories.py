import factory
from django.utils import timezone

from consent.models import ConsentRecord
from gtm_api.models import Lead
from neuronx.models import Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"lead{n}@acme-corp.com")
    first_name = "Grace"
    last_name = "Hopper"
    source = "web_form"
    attributes = factory.LazyFunction(dict)


class ConsentRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentRecord

    lead = factory.SubFactory(LeadFactory)
    tenant = factory.SelfAttribute("lead.tenant")
    scope = "contact.email"
    granted = True
    captured_at = factory.LazyFunction(timezone.now)
    source = "web_form"
    recorded_by = "internal:test"
