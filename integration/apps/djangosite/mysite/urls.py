from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.index),
    path("items/<int:item_id>/", views.item),
    path("submit/", views.submit),
    path("fail/", views.fail),
]
