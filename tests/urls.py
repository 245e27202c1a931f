from __future__ import annotations

from django.contrib import admin
from django.urls import path

from django_oncejob.monitoring.fleet import metrics_view

urlpatterns = [path("admin/", admin.site.urls), path("oncejob/metrics", metrics_view)]
