"""Filters for the directory, shared by the API and the pages."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from telehealth.models import Facility, FacilityLevel, search_key


class FacilityFilter(django_filters.FilterSet):
    province = django_filters.CharFilter(
        field_name="province__code", help_text=_("Province code (today's 34).")
    )
    level = django_filters.ChoiceFilter(choices=FacilityLevel.choices)
    specialty = django_filters.CharFilter(
        method="filter_specialty", help_text=_("Specialty code, for example 'cardiology'.")
    )
    hub = django_filters.BooleanFilter(field_name="is_telehealth_hub")
    parent = django_filters.CharFilter(field_name="parent__code")
    q = django_filters.CharFilter(
        method="filter_name", help_text=_("Part of the name, with or without diacritics.")
    )

    class Meta:
        model = Facility
        fields = ["province", "level", "specialty", "hub", "parent", "q"]

    def filter_specialty(self, queryset: QuerySet[Facility], name: str, value: str):  # type: ignore[no-untyped-def]
        return queryset.filter(offerings__specialty__code=value)

    def filter_name(self, queryset: QuerySet[Facility], name: str, value: str):  # type: ignore[no-untyped-def]
        query = queryset
        for word in search_key(value).split():
            query = query.filter(search_name__contains=word)
        return query
