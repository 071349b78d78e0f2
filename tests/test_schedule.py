import pytest

from mdlc_constructs.spec.schedule import cron_fields, validate_schedule


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 2 * * ? *)",
        "cron(0 4 ? * SUN *)",
        "cron(0/15 * * * ? *)",
        "cron(0 2 L * ? *)",
        "cron(0 2 ? * 6#3 *)",
        "cron(0 8 1,15 JAN-MAR ? 2027)",
        "rate(1 day)",
        "rate(5 minutes)",
    ],
)
def test_valid(expression):
    assert validate_schedule(expression) == expression


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 2 * *)", "6 fields, got 4"),
        ("cron(60 2 * * ? *)", "minutes value 60 is outside 0-59"),
        ("cron(0 2 32 * ? *)", "day-of-month value 32 is outside 1-31"),
        ("cron(0 2 ? FOO * *)", "month value 'FOO' is not a number"),
        ("cron(0 2 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 2 ? * 6#9 *)", "#1 to #5"),
        ("rate(1 days)", "use '1 day'"),
        ("rate(0 days)", "at least 1"),
        ("0 2 * * *", "expected 'cron("),
    ],
)
def test_invalid(expression, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate_schedule(expression)


def test_cron_fields_for_events_schedule():
    assert cron_fields("cron(0 4 ? * SUN *)") == {
        "minute": "0",
        "hour": "4",
        "month": "*",
        "year": "*",
        "week_day": "SUN",
    }
    assert cron_fields("rate(1 day)") is None
