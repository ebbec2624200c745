"""image sizes (issue 4: photos)

Reserved in the revision chain so parallel work never makes two heads;
the issue's owner fills in upgrade() and downgrade().

Revision ID: 0002
Revises: 0001
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
