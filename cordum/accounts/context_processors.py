from cordum.accounts.permissions import Perm


def organization(request):
    membership = getattr(request, "membership", None)
    membership = membership if membership else None
    perms = set()
    if membership is not None:
        perms = {p for p in Perm.values if membership.has_perm(p)}
    return {
        "current_membership": membership,
        "current_organization": membership.organization if membership else None,
        "perms": perms,
    }
