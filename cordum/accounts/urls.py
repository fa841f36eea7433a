from django.urls import path

from cordum.accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("org/switch/", views.SwitchOrganizationView.as_view(), name="switch_org"),
    path("teams/", views.TeamListView.as_view(), name="team_list"),
    path("teams/new/", views.TeamCreateView.as_view(), name="team_create"),
    path("teams/<int:pk>/edit/", views.TeamUpdateView.as_view(), name="team_update"),
    path("teams/<int:pk>/delete/", views.TeamDeleteView.as_view(), name="team_delete"),
    path("members/", views.MembershipListView.as_view(), name="membership_list"),
    path("members/new/", views.MembershipCreateView.as_view(), name="membership_create"),
    path("members/<int:pk>/edit/", views.MembershipUpdateView.as_view(), name="membership_update"),
    path("members/<int:pk>/delete/", views.MembershipDeleteView.as_view(), name="membership_delete"),
    path("members/<int:pk>/invite/", views.MembershipInviteView.as_view(), name="membership_invite"),
    path("members/<int:pk>/invite/revoke/", views.MembershipInviteView.as_view(revoke=True),
         name="membership_invite_revoke"),
    path("invite/<str:token>/", views.InvitationAcceptView.as_view(), name="invitation_accept"),
    path("agents/", views.AgentListView.as_view(), name="agent_list"),
    path("agents/new/", views.AgentCreateView.as_view(), name="agent_create"),
    path("agents/<int:pk>/rotate/", views.AgentRotateTokenView.as_view(), name="agent_rotate"),
    path("agents/<int:pk>/revoke/", views.AgentRevokeView.as_view(), name="agent_revoke"),
    path("me/tokens/", views.UserTokenListView.as_view(), name="user_tokens"),
    path("me/tokens/<int:pk>/revoke/", views.UserTokenRevokeView.as_view(), name="user_token_revoke"),
    path("audit-log/", views.AdminAuditLogView.as_view(), name="audit_log"),
    path("settings/sso/", views.SingleSignOnSettingsView.as_view(), name="sso_settings"),
    path("sso/", views.SingleSignOnStartView.as_view(), name="sso_start"),
    path("sso/<slug:slug>/login/", views.SingleSignOnStartView.as_view(), name="sso_login"),
    path("sso/<slug:slug>/callback/", views.SingleSignOnCallbackView.as_view(), name="sso_callback"),
]
