"""Merge the demo policy repo's proposed branch into main locally, sync, and show the rollout it starts."""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Merge the demo repository's proposed branch (default proposed/deny-npm-publish) into main, sync it, "
            "and print the rollout that the new live version starts.")

    def add_arguments(self, parser):
        from cordum.policies.demo import PROPOSED_BRANCH, REPO_NAME

        parser.add_argument("--branch", default=PROPOSED_BRANCH)
        parser.add_argument("--organization", default="acme", help="organisation slug (demo: acme)")
        parser.add_argument("--repository", default=REPO_NAME, help="policy repository name (demo: policies)")

    def handle(self, *args, branch, organization, repository, **options):
        import git

        from cordum.policies.models import PolicyRepository
        from cordum.policies.services import sync_repository
        from cordum.rollouts.models import Rollout

        repo_row = PolicyRepository.objects.filter(organization__slug=organization, name=repository).first()
        if repo_row is None:
            raise CommandError(f"No policy repository {repository!r} in {organization!r}: run `manage.py load_demo`.")
        try:
            repo = git.Repo(repo_row.url)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise CommandError(f"{repo_row.url} is not a local git repository (only the demo repo can be merged "
                               "here; merge real pull requests on your git host).") from None
        if branch not in [h.name for h in repo.heads]:
            raise CommandError(f"No branch {branch!r} in {repo_row.url}.")
        live = repo_row.branch
        if repo.is_dirty(untracked_files=False):
            raise CommandError(f"{repo_row.url} has uncommitted changes; refusing to merge.")
        repo.git.checkout(live)
        if repo.is_ancestor(repo.heads[branch].commit, repo.head.commit):
            self.stdout.write(f"{branch} is already merged into {live}.")
        else:
            with repo.config_writer() as config:
                config.set_value("commit", "gpgsign", "false")
            repo.git.merge("--no-ff", branch, "-m", f"Merge {branch}",
                           env={"GIT_AUTHOR_NAME": "Avery Author", "GIT_AUTHOR_EMAIL": "author@example.com",
                                "GIT_COMMITTER_NAME": "Avery Author", "GIT_COMMITTER_EMAIL": "author@example.com"})
            self.stdout.write(f"Merged {branch} into {live}: {repo.head.commit.hexsha[:7]}")
        result = sync_repository(repository=repo_row)
        self.stdout.write(f"Synced: live version {result.live_version or 'unchanged'}"
                          + (f", published bundle #{result.published_bundle}" if result.published_bundle else "")
                          + (f" ({result.warning})" if result.warning else ""))
        rollout = Rollout.objects.filter(repository=repo_row).order_by("-created_at", "-id").first()
        if rollout is None:
            self.stdout.write("No rollout: the repository has no rollout plan, so every agent got the new version.")
            return
        stage = rollout.stage["name"] if rollout.stage else "not started"
        self.stdout.write(self.style.SUCCESS(
            f"Rollout #{rollout.pk} {rollout.from_version.version} -> {rollout.to_version.version}: "
            f"{rollout.get_state_display()}, stage {stage}. Watch it at /rollouts/{rollout.pk}/ and /rollouts/fleet/."))
