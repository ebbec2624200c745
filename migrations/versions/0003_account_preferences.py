"""account preferences (issue 3: browser experience)

Reserved in the revision chain so parallel work never makes two heads;
the issue's owner fills in upgrade() and downgrade().

Revision ID: 0003
Revises: 0002
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
