import factory
from django.contrib.auth import get_user_model

from access.models import Role
from access.services import role_ensure_defaults, service_token_create, user_role_assign
from catalog.models import DataStore
from catalog.services import dataset_register


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pw-for-tests")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if not extracted:
            return
        role_ensure_defaults()
        for slug in extracted:
            user_role_assign(user=self, role=Role.objects.get(slug=slug))


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataStore
        django_get_or_create = ["name"]

    name = factory.Sequence(lambda n: f"store{n}")
    kind = "analytical"
    platform = "postgresql"
    environment = "prod"
    residency = "CA"
    line_of_business = "reviews"


def column_payload(name="id", *, type_="STRING", sensitivity="Regular", protection="None", **extra):
    return {"name": name, "type": type_, "sensitivity": sensitivity, "protection": protection, **extra}


def registration_payload(*, store, name="marketing.review_sentiment", columns=None, **extra):
    """A valid registration body in the guidance's format."""
    return {
        "name": name,
        "store": store.name if isinstance(store, DataStore) else store,
        "registrationTime": "1623167711",
        "registeredBy": "ServiceAccount1",
        "description": "For the marketing team to use for review analytics",
        "version": "1",
        "columns": columns
        if columns is not None
        else [
            column_payload("ReviewID", mode="REQUIRED", originatingSource="transactional:Reviews"),
            column_payload("ReviewSentiment", type_="FLOAT", mode="REQUIRED", originatingSource="mlmodel:Sentiment"),
        ],
        **extra,
    }


def dataset_create(*, principal, store, **payload_fields):
    dataset, _ = dataset_register(principal=principal, payload=registration_payload(store=store, **payload_fields))
    return dataset


def service_account_with_key(*, username="pipeline", roles=("data_engineer",)):
    user = UserFactory(username=username, is_service_account=True, roles=list(roles))
    _, key = service_token_create(user=user)
    return user, key
