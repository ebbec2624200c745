"""Flask-WTF forms: CSRF protection and field errors for the pages."""

from flask_wtf import FlaskForm
from wtforms import EmailField, MultipleFileField, PasswordField, TextAreaField
from wtforms.validators import DataRequired


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class EntryForm(FlaskForm):
    text = TextAreaField("What happened today?")
    file = MultipleFileField("Photos")
