from cordum.accounts.api import views
from cordum.common.api import Router

router = Router()
router.register("teams", views.TeamViewSet, basename="team")
router.register("memberships", views.MembershipViewSet, basename="membership")
router.register("agents", views.AgentViewSet, basename="agent")
urlpatterns = router.urls
