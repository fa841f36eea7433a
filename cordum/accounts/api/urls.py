from rest_framework.routers import SimpleRouter

from cordum.accounts.api import views

router = SimpleRouter()
router.register("teams", views.TeamViewSet, basename="team")
router.register("memberships", views.MembershipViewSet, basename="membership")
router.register("agents", views.AgentViewSet, basename="agent")
urlpatterns = router.urls
