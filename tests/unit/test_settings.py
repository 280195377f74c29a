"""How Settings reads an environment (chalicelib/config.py): each field from its upper-case variable, a
malformed value refused naming its variable, empty numbers as unset, and only from_env reading the process
environment. The admin token's stage rule: test_admin_token.py; the shipped retry policy: test_domain.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.config import Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_SEATS_PER_BOOKING", "six"),
        ("SEAT_LEASE_SECONDS", "5s"),
        ("QUEUE_VISIBILITY_TIMEOUT_SECONDS", "30.5"),
        ("REDIS_DOWN_FALLBACK", "yes"),
        ("DEFAULT_STRATEGY", "optimism"),
    ],
)
def test_a_malformed_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.from_env({variable: value})
    assert [error["loc"] for error in refused.value.errors()] == [(variable,)]
    assert variable in str(refused.value) and repr(value) in str(refused.value)


def test_values_are_converted_to_the_fields_types() -> None:
    settings = Settings.from_env(
        {"MAX_SEATS_PER_BOOKING": "6", "SEAT_MAP_CACHE_SECONDS": "0.5", "REDIS_DOWN_FALLBACK": "db_lock"}
    )
    assert (settings.max_seats_per_booking, settings.seat_map_cache_seconds) == (6, 0.5)
    assert settings.redis_down_fallback == "db_lock"


def test_an_empty_number_or_endpoint_is_unset_and_an_empty_text_is_kept() -> None:
    settings = Settings.from_env(
        {"DB_POOL_SIZE": "", "BACKOFF_BASE_SECONDS": "", "AWS_ENDPOINT_URL": "", "REDIS_KEY_PREFIX": ""}
    )
    assert settings.db_pool_size == Settings().db_pool_size == 16
    assert settings.backoff_base_seconds == Settings().backoff_base_seconds == 2.0
    assert settings.aws_endpoint_url is None
    assert settings.redis_key_prefix == ""


def test_aws_region_falls_back_to_the_sdks_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    both = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert Settings.from_env(both).aws_region == "eu-central-1"
    assert Settings.from_env({}).aws_region == "us-east-1"


def test_only_the_upper_case_variable_sets_a_field() -> None:
    """The fields' own names are for code (Settings(stage=...)), not variables: `stage=prod` is not STAGE."""
    settings = Settings.from_env({"stage": "prod", "redis_key_prefix": "x", "Redis_Key_Prefix": "y"})
    assert (settings.stage, settings.redis_key_prefix) == ("local", "bk")


def test_only_from_env_reads_the_process_environment(monkeypatch) -> None:
    monkeypatch.setenv("MAX_SEATS_PER_BOOKING", "9")
    assert Settings.from_env().max_seats_per_booking == 9
    assert Settings().max_seats_per_booking == 4
    assert Settings(db_pool_size=3).max_seats_per_booking == 4


def test_each_field_is_read_from_its_name_in_upper_case() -> None:
    assert Settings.env_name("redis_key_prefix") == "REDIS_KEY_PREFIX"
    assert all(Settings.env_name(field) == field.upper() for field in Settings.model_fields)
    assert Settings.env_names_of("aws_region") == ("AWS_REGION", "AWS_DEFAULT_REGION")


def test_settings_written_as_an_environment_read_back_the_same() -> None:
    """What a child process (the fault tests' worker, the bench's stack) is started with."""
    changed = Settings.from_env({"STAGE": "test", "ADMIN_TOKEN": "t"}).replace(
        redis_key_prefix="other",
        max_receive_count=3,
        seat_map_cache_seconds=0.25,
        aws_endpoint_url="http://127.0.0.1:5999",
        redis_down_fallback="db_lock",
    )
    assert Settings.from_env(changed.as_environment()) == changed
    assert Settings.from_env({**changed.as_environment(), "AWS_ENDPOINT_URL": ""}).aws_endpoint_url is None
    assert changed.as_environment("booking_queue_name", "stream_shard_count") == {
        "BOOKING_QUEUE_NAME": "booking-events",
        "STREAM_SHARD_COUNT": "2",
    }


def test_settings_are_immutable_and_replace_validates() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.stage = "prod"  # type: ignore[misc]
    assert settings.replace(stage="prod").stage == "prod" and settings.stage == "local"
    with pytest.raises(ValidationError, match="stgae"):
        settings.replace(stgae="prod")
    with pytest.raises(ValidationError, match="redis_down_fallback"):
        settings.replace(redis_down_fallback="yes")
