"""What charging costs: the kWh price history of each community (expense notes come later)."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from communities.models import Community, scoped_manager


class Price(models.Model):
    """A kWh price valid from `valid_from` (community local date) until the next one."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="prices")
    valid_from = models.DateField(_("valid from"))
    price_per_kwh = models.DecimalField(
        _("price per kWh"),
        max_digits=10,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = scoped_manager()

    class Meta:
        ordering = ["-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["community", "valid_from"], name="price_unique_date")
        ]

    def __str__(self):
        return f"{self.price_per_kwh} from {self.valid_from}"
