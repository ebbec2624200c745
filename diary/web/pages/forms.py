"""Flask-WTF forms: CSRF protection, labels in the reader's language and field errors."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from flask import request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from wtforms import (
    BooleanField,
    EmailField,
    FileField,
    MultipleFileField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, Length

from ...accounts import MAX_DISPLAY_NAME, MIN_PASSWORD_LENGTH
from ...errors import InvalidInput
from ...inputs import without_surrogates

REQUIRED = _l("This field is required.")
NOT_A_FILE = _l("Send this as text, not as a file.")
NOT_TEXT = _l("Send this as a string.")


class Form(FlaskForm):
    """A page form whose text fields only ever hold text.

    Flask-WTF merges request.files into the form data, so a file part named
    `email` reached the rules as a file object; it reads a JSON body as form
    data, so `{"email": 1}` reached them as a number, and a body nested
    100,000 deep failed in json.loads: each a 500. Here file parts reach
    only file fields, a JSON body (sign-in scripts post one) gives only its
    strings (and booleans to checkboxes), and a field sent as anything else
    is refused next to it.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is None or hasattr(formdata, "getlist"):
                return formdata  # chosen by the view (None: an empty form)
            if not form.is_submitted():
                return None
            form.refused = {}
            if request.is_json:
                return _json_members(form)
            files = MultiDict()
            for field in form:
                if field.name not in request.files:
                    continue
                if isinstance(field, FileField):
                    files.setlist(field.name, request.files.getlist(field.name))
                else:
                    form.refused[field.name] = NOT_A_FILE
            return CombinedMultiDict((files, request.form))

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        for name, message in getattr(self, "refused", {}).items():
            self[name].errors = [str(message)]
            valid = False
        return valid


def _json_members(form: Form) -> MultiDict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `silent` covers only ValueError
        raise InvalidInput("body", "The JSON is nested too deeply.") from None
    members: MultiDict[str, Any] = MultiDict()
    for field in form:
        if not isinstance(body, dict) or field.name not in body:
            continue
        value = body[field.name]
        if isinstance(value, str):
            members.add(field.name, without_surrogates(value))
        elif isinstance(field, BooleanField) and isinstance(value, bool):
            members.add(field.name, value)
        else:
            form.refused[field.name] = NOT_TEXT
    return members


def display_name_field() -> StringField:
    return StringField(
        _l("Display name"),
        validators=[
            Length(
                max=MAX_DISPLAY_NAME,
                message=_l("At most %(max)d characters.", max=MAX_DISPLAY_NAME),
            )
        ],
    )


def new_password_field(label: str) -> PasswordField:
    """A password being chosen: required, and long enough."""
    return PasswordField(
        label,
        validators=[
            DataRequired(REQUIRED),
            Length(
                min=MIN_PASSWORD_LENGTH,
                message=_l("At least %(min)d characters.", min=MIN_PASSWORD_LENGTH),
            ),
        ],
    )


def confirm_field(label: str, of: str) -> PasswordField:
    return PasswordField(label, validators=[EqualTo(of, message=_l("The two passwords differ."))])


class LoginForm(Form):
    email = EmailField(_l("Email"), validators=[DataRequired(REQUIRED)])
    password = PasswordField(_l("Password"), validators=[DataRequired(REQUIRED)])


class SignupForm(Form):
    email = EmailField(_l("Email"), validators=[DataRequired(REQUIRED)])
    display_name = display_name_field()
    password = new_password_field(_l("Password"))
    confirm = confirm_field(_l("Password again"), "password")


class EntryForm(Form):
    text = TextAreaField(_l("What happened today?"))
    file = MultipleFileField(_l("Photos"))


class EditEntryForm(Form):
    text = TextAreaField(_l("Text"))
    file = MultipleFileField(_l("Add photos"))


class ProfileForm(Form):
    display_name = display_name_field()
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


class PasswordForm(Form):
    current_password = PasswordField(_l("Current password"), validators=[DataRequired(REQUIRED)])
    new_password = new_password_field(_l("New password"))
    confirm = confirm_field(_l("New password again"), "new_password")
    # Ticked at first: a password is mostly changed because it may have leaked,
    # and whoever knew it could have made a token that would outlive the change.
    revoke_tokens = BooleanField(_l("Also revoke all my API tokens"), default=True)


class TokenForm(Form):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(REQUIRED),
            Length(max=100, message=_l("At most %(max)d characters.", max=100)),
        ],
    )
