"""Flask-WTF forms: CSRF protection, labels in the reader's language and field errors."""

from __future__ import annotations

from zoneinfo import available_timezones

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    MultipleFileField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, Length

from ...accounts import MAX_DISPLAY_NAME, MIN_PASSWORD_LENGTH

REQUIRED = _l("This field is required.")


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(REQUIRED)])
    password = PasswordField(_l("Password"), validators=[DataRequired(REQUIRED)])


class SignupForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(REQUIRED)])
    display_name = StringField(
        _l("Display name"),
        validators=[
            Length(
                max=MAX_DISPLAY_NAME,
                message=_l("At most %(max)d characters.", max=MAX_DISPLAY_NAME),
            )
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(REQUIRED),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=_l("At least %(min)d characters.", min=MIN_PASSWORD_LENGTH),
            ),
        ],
    )
    confirm = PasswordField(
        _l("Password again"),
        validators=[EqualTo("password", message=_l("The two passwords differ."))],
    )


class EntryForm(FlaskForm):
    text = TextAreaField(_l("What happened today?"))
    file = MultipleFileField(_l("Photos"))


class EditEntryForm(FlaskForm):
    text = TextAreaField(_l("Text"))
    file = MultipleFileField(_l("Add photos"))


class ProfileForm(FlaskForm):
    display_name = StringField(
        _l("Display name"),
        validators=[
            Length(
                max=MAX_DISPLAY_NAME,
                message=_l("At most %(max)d characters.", max=MAX_DISPLAY_NAME),
            )
        ],
    )
    time_zone = SelectField(_l("Time zone"), validate_choice=True)
    language = SelectField(_l("Language"), validate_choice=True)

    def __init__(self, *args: object, default_timezone: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.time_zone.choices = [
            ("", _l("Site default (%(zone)s)", zone=default_timezone)),
            *((zone, zone) for zone in sorted(available_timezones())),
        ]
        self.language.choices = [
            ("", _l("As the browser prefers")),
            ("ja", "日本語"),
            ("en", "English"),
        ]


class PasswordForm(FlaskForm):
    current_password = PasswordField(_l("Current password"), validators=[DataRequired(REQUIRED)])
    new_password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(REQUIRED),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=_l("At least %(min)d characters.", min=MIN_PASSWORD_LENGTH),
            ),
        ],
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[EqualTo("new_password", message=_l("The two passwords differ."))],
    )
    # Ticked at first: a password is mostly changed because it may have leaked,
    # and whoever knew it could have made a token that would outlive the change.
    revoke_tokens = BooleanField(_l("Also revoke all my API tokens"), default=True)


class TokenForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(REQUIRED),
            Length(max=100, message=_l("At most %(max)d characters.", max=100)),
        ],
    )
