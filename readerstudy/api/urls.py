from rest_framework.routers import DefaultRouter

from readerstudy.api.views import SessionViewSet, StudyViewSet

router = DefaultRouter()
router.register("studies", StudyViewSet, basename="study")
router.register("sessions", SessionViewSet, basename="session")

urlpatterns = router.urls
