"""The tenant console in a real browser: what a tenant does from the pages, end to end
through the API, with feedback they can see, and what a viewer may not do."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts import services as accounts
from accounts.models import Organization, Role, UserSession
from audit.models import AuditLog
from hosting import services
from hosting.deployments.logs import append_log
from hosting.models import DockerHost, EnvironmentVariable, OrganizationQuota, Site
from monitoring.models import UsageSample
from notifications import tasks
from notifications.models import EmailSubscription
from tests.deployments import no_broker, succeeded
from tests.factories import PASSWORD, add_member, make_org, make_user
from tests.hosting.factories import make_env, make_site
from tests.notifications.test_notifications import finish_deployment

pytestmark = pytest.mark.browser


@pytest.fixture
def team(transactional_db):
    owner = make_user("olive@example.test", display_name="Olive")
    viewer = make_user("vic@example.test")
    org = make_org(owner, "Acme", slug="acme")
    add_member(org, viewer, Role.VIEWER)
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent/docker.sock")
    return org, owner, viewer


def test_a_tenant_creates_an_organization_and_a_site_from_the_pages(browse, team):
    _, owner, _ = team
    watched = browse(owner)
    page = watched.page
    page.goto("/")
    expect(page.get_by_role("link", name="Acme")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Beta Works")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url("**/o/beta-works/")
    expect(page.get_by_role("heading", name=re.compile("Beta Works"))).to_be_visible()
    expect(page.locator("#org-switch option", has_text="Beta Works")).to_have_count(1)
    expect(page.get_by_text("No sites match")).to_be_visible()  # the empty state says what next

    page.get_by_role("button", name="New site").click()
    page.get_by_label("Type").select_option("docker")
    page.get_by_label("Name", exact=True).fill("Shop")
    page.get_by_label("Image").fill("example/shop:1")
    page.get_by_label("Port the app listens on").fill("8080")
    page.get_by_role("button", name="Create site").click()
    page.wait_for_url("**/o/beta-works/sites/shop/")
    # The engine cannot be reached: the page says the change waits for it, not "running".
    expect(page.locator("#site-reason")).to_contain_text("Pending")
    assert Site.objects.get(slug="shop").organization.slug == "beta-works"


def test_field_errors_appear_beside_their_fields_and_clear_on_the_next_try(browse, team):
    org, owner, _ = team
    page = browse(owner).page
    page.goto(f"/o/{org.slug}/sites/new/")
    page.get_by_label("Type").select_option("docker")
    page.get_by_role("button", name="Create site").click()
    expect(page.locator(".field-error").first).to_be_visible()
    expect(page.locator("#new-site .status")).to_have_text("Please correct the marked fields.")
    page.get_by_label("Name", exact=True).fill("Blog")
    page.get_by_label("Image").fill("example/blog:1")
    page.get_by_role("button", name="Create site").click()
    page.wait_for_url("**/sites/blog/")


def test_env_vars_from_the_editor_and_a_pasted_env_file_secrets_masked(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/sites/web/env/")
    expect(page.get_by_text("No variables yet")).to_be_visible()
    page.get_by_label("Key", exact=True).fill("API_KEY")
    page.get_by_label("Value", exact=True).fill("s3cret-value")
    page.get_by_label("Secret", exact=True).check()
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#env-add .status")).to_contain_text("API_KEY set")
    row = page.locator("#env tr", has_text="API_KEY")
    expect(row).to_contain_text("********")
    assert "s3cret-value" not in page.content()
    row.get_by_role("button", name="Reveal").click()
    expect(row).to_contain_text("s3cret-value")
    assert AuditLog.objects.filter(action="env.reveal").count() == 1

    page.get_by_label(re.compile("Lines of KEY=value")).fill(
        '# settings\nexport DEBUG=false\nGREETING="hello world"\nAPI_KEY=rotated\nnot a line\n'
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#env-paste .status")).to_contain_text("3 variable(s) set")
    expect(page.locator("#env-paste .status")).to_contain_text("Not KEY=value: not a line")
    values = {v.key: services.reveal_env_value(v) for v in EnvironmentVariable.objects.all()}
    assert values == {"API_KEY": "rotated", "DEBUG": "false", "GREETING": "hello world"}
    assert EnvironmentVariable.objects.get(key="API_KEY").is_secret  # stays secret

    row = page.locator("#env tr", has_text="GREETING")
    row.get_by_role("button", name="Edit").click()
    field = row.get_by_label("New value for GREETING")
    expect(field).to_have_value("hello world")
    field.fill("bonjour")
    field.press("Enter")
    expect(page.locator("#env-status")).to_have_text(
        "GREETING changed; it applies at the next restart."
    )
    expect(page.locator("#env tr", has_text="GREETING")).to_contain_text("bonjour")


def test_a_viewer_sees_what_they_may_not_do_and_why(browse, team):
    org, _, viewer = team
    make_site(org, name="Web", slug="web")
    page = browse(viewer).page
    page.goto("/o/acme/sites/web/")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_disabled()
    expect(stop).to_have_attribute("title", "This needs the member role; you are viewer.")
    page.goto("/o/acme/sites/web/settings/")
    expect(page.get_by_role("button", name="Delete site…")).to_be_disabled()
    expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    page.goto("/o/acme/audit/")
    expect(page.get_by_text("This needs the admin role; you are viewer.")).to_be_visible()


def test_deleting_a_site_needs_its_name_typed(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/sites/web/settings/")
    page.get_by_role("button", name="Delete site…").click()
    dialog = page.get_by_role("dialog")
    delete = dialog.get_by_role("button", name="Delete")
    expect(delete).to_be_disabled()
    dialog.get_by_label("Name", exact=True).fill("we")
    expect(delete).to_be_disabled()
    dialog.get_by_label("Name", exact=True).fill("web")
    delete.click()
    page.wait_for_url("**/o/acme/")
    assert Site.objects.get(slug="web").deleted_at is not None


def test_a_token_is_shown_once_with_a_copy_button_then_listed_and_revoked(browse, team):
    _, owner, _ = team
    page = browse(owner).page
    page.goto("/account/tokens/")
    page.get_by_label("Name", exact=True).fill("CI")
    page.get_by_label("Organization").select_option("acme")
    page.get_by_label("deploy").check()
    page.get_by_role("button", name="Create token").click()
    shown = page.locator(".secret-once")
    expect(shown).to_contain_text("shown only now")
    expect(shown.get_by_role("button", name="Copy")).to_be_visible()
    token = shown.locator("code").inner_text()
    assert token.startswith("hp_") and len(token) > 20
    row = page.locator("#tokens tr", has_text="CI")
    expect(row).to_contain_text("deploy, read")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens-status")).to_have_text("CI revoked.")
    page.reload()
    assert token not in page.content()


def test_an_invited_person_creates_an_account_with_the_invitation_alone(browse, team):
    org, owner, _ = team
    _, code = accounts.invite(org, email="newt@example.test", role=Role.MEMBER, actor=owner)
    page = browse().page
    page.goto(f"/invitations/{code}/")
    expect(page.get_by_role("heading", name="Join Acme")).to_be_visible()
    page.get_by_label("Display name").fill("Newt")
    page.get_by_label("Password").fill("a long enough pass 1")
    page.get_by_role("button", name="Create account and join").click()
    page.wait_for_url("**/o/acme/")
    expect(page.get_by_role("heading", name=re.compile("Acme"))).to_contain_text("member")
    assert Organization.objects.get(slug="acme").memberships.filter(user__email="newt@example.test")


def test_the_audit_feed_reads_as_sentences_and_filters(browse, team):
    org, owner, _ = team
    site = make_site(org, name="Shop", slug="shop", actor=owner)
    make_env(site, key="DATABASE_URL")
    services.stop_site(site, actor=owner)
    page = browse(owner).page
    page.goto("/o/acme/audit/")
    expect(page.get_by_text("olive@example.test created the site")).to_be_visible()
    page.get_by_label("Kind").select_option("env.")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    expect(page.locator("#audit")).to_contain_text("set env DATABASE_URL")
    page.get_by_label("Kind").select_option("")
    page.get_by_label("Who").select_option(label="olive@example.test")
    expect(page.locator("#audit")).not_to_contain_text("set env DATABASE_URL")  # the system's
    expect(page.locator("#audit tbody tr").first).to_contain_text("olive@example.test")


def test_share_links_are_made_and_shown_once_on_the_sharing_page(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    DockerHost.objects.update(proxy_admin="unix:///nonexistent/admin.sock")  # it has a URL
    page = browse(owner).page
    page.goto("/o/acme/sites/web/sharing/")
    page.get_by_label("Private").check()
    expect(page.locator("#privacy-status")).to_have_text("The site is private now.")
    page.get_by_label("Label").fill("client")
    page.get_by_role("button", name="Create link").click()
    expect(page.locator("#new-link")).to_contain_text(
        "http://web-acme.sites.localhost:8080/?hp_share="
    )
    expect(page.locator("#links tr", has_text="client")).to_contain_text("active")
    assert Site.objects.get(slug="web").is_private


@pytest.mark.parametrize(
    "path",
    ["/", "/o/acme/", "/o/acme/sites/web/", "/o/acme/sites/web/deployments/",
     "/o/acme/sites/web/env/", "/o/acme/sites/web/usage/", "/o/acme/members/",
     "/account/tokens/"],
)  # fmt: skip
def test_pages_fit_a_375_px_phone_without_sideways_scrolling(browse, team, path):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner, width=375).page
    page.goto(path)
    page.wait_for_load_state("networkidle")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{path} is {width} px wide"


def test_usage_charts_draw_from_the_usage_api(browse, team):
    org, owner, _ = team
    site = make_site(org, name="Web", slug="web")
    now = timezone.now()
    UsageSample.objects.bulk_create(
        UsageSample(
            site=site, organization=org, docker_id="c1", timestamp=now - timedelta(minutes=m * 5),
            cpu_percent=10 + m, memory_bytes=50 << 20, net_rx_bytes=1000, net_tx_bytes=1000,
        )
        for m in range(20)
    )  # fmt: skip
    page = browse(owner).page
    page.goto("/o/acme/sites/web/usage/")
    expect(page.locator("#chart-cpu canvas")).to_have_count(1)
    expect(page.locator("#chart-memory canvas")).to_have_count(1)
    page.get_by_role("button", name="1 hour").click()
    expect(page.get_by_role("button", name="1 hour")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("link", name=re.compile("daily CSV"))).to_have_attribute(
        "href", "/api/v1/organizations/acme/usage/daily.csv"
    )


def test_deployments_show_history_logs_and_roll_back_to_a_chosen_one(
    browse, team, monkeypatch, settings
):
    sent = no_broker(settings, monkeypatch)
    org, owner, _ = team
    site = make_site(org, name="Web", slug="web", repository_url="file:///tmp/x")
    first = succeeded(site, owner)
    append_log(first, "building", "Step 1/3 : FROM busybox\nbuilt fine\n")
    succeeded(site, owner)
    page = browse(owner).page
    page.goto("/o/acme/sites/web/deployments/")
    rows = page.locator("#deployments tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("#2")
    expect(rows.first).to_contain_text("olive@example.test")
    row = page.locator(f"#deployment-{first.pk}")
    row.get_by_role("button", name="Log").click()
    expect(page.locator("#log")).to_contain_text("built fine")
    expect(page.locator("#log-note")).to_contain_text("finished")

    row.get_by_role("button", name="Roll back to this").click()
    restore = page.locator("#restore")
    expect(restore).to_contain_text("Roll back to #1?")
    expect(restore).to_contain_text("API_KEY (secret)")  # what it restores, never a value
    expect(restore).to_contain_text("internal_port")
    restore.get_by_role("button", name="Roll back to #1").click()
    expect(page.locator("#row-status")).to_have_text("Rollback #3 queued.")
    expect(rows).to_have_count(3)
    rollback = site.deployments.get(number=3)
    assert rollback.rollback_of_id == first.pk and sent[-1] == str(rollback.pk)  # to a worker


def test_members_invitations_and_roles_from_the_members_page(browse, team):
    org, owner, viewer = team
    page = browse(owner).page
    page.goto("/o/acme/members/")
    row = page.locator("#members tr", has_text="vic@example.test")
    row.get_by_label("Role of vic@example.test").select_option("member")
    expect(page.locator("#member-status")).to_have_text("vic@example.test is member now.")
    assert org.memberships.get(user=viewer).role == "member"

    page.get_by_label("Email").fill("friend@example.test")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator("#invite-link")).to_contain_text("/invitations/")
    expect(page.locator("#invitations tr", has_text="friend@example.test")).to_contain_text(
        "pending"
    )
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Remove").click()
    expect(page.locator("#member-status")).to_have_text("vic@example.test removed.")
    assert not org.memberships.filter(user=viewer).exists()


def test_domains_get_txt_instructions_and_limits_save_from_their_forms(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/sites/web/domains/")
    page.get_by_label("Hostname").fill("www.example.com")
    page.get_by_role("button", name="Add domain").click()
    row = page.locator("#domains tr", has_text="www.example.com")
    expect(row).to_contain_text("_hostpanel")  # the TXT record's name, with a copy button
    expect(row.get_by_role("button", name=re.compile("^Copy"))).to_have_count(2)
    row.get_by_role("button", name="Verify").click()
    expect(page.locator("#domain-status")).to_contain_text("www.example.com")

    page.goto("/o/acme/sites/web/limits/")
    expect(page.get_by_label("Memory (MB)")).to_have_value("64")
    page.get_by_label("Memory (MB)").fill("96")
    page.get_by_role("button", name="Save limits").click()
    expect(page.locator("#limits .status")).to_have_text("Limits saved.")
    assert Site.objects.get(slug="web").limits.memory_mb == 96


def test_account_password_change_and_webhook_secret_shown_once(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web", repository_url="https://git.example.com/x.git")
    page = browse(owner).page
    page.goto("/account/")
    page.get_by_label("Current password").fill("wrong")
    page.get_by_label("New password").fill("a brand new pass 9")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password .field-error")).to_have_text(
        "This is not your current password."
    )
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password .status")).to_contain_text("Password changed")
    owner.refresh_from_db()
    assert owner.check_password("a brand new pass 9")

    page.goto("/o/acme/sites/web/webhook/")
    expect(page.locator("#hook")).to_contain_text("/api/v1/hooks/git/")
    page.get_by_role("button", name="Set a new secret").click()
    expect(page.locator("#secret .secret-once")).to_contain_text("shown only now")
    page.reload()
    expect(page.locator("#hook")).to_contain_text("set (shown only when set)")
    expect(page.locator("#secret")).to_be_empty()


def test_notifications_choices_and_a_webhook_from_the_page(browse, team, settings):
    settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = True
    org, owner, _ = team
    site = make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/notifications/")
    failed = page.get_by_label("A deployment failed").first
    expect(failed).to_be_checked()  # an owner's default
    page.locator("#event-boxes").get_by_label("A deployment succeeded").check()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.locator("#my-events .status")).to_have_text("Saved: you get these by email.")
    events = EmailSubscription.objects.get(user=owner).events
    assert events == [
        "deployment.failed",
        "deployment.succeeded",
        "site.limit_breached",
        "site.unhealthy",
    ]

    page.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#hook-secret")).to_contain_text("whsec_")
    expect(page.locator("#hooks tr", has_text="127.0.0.1:9")).to_contain_text("deployment.failed")
    tasks.notify.run(str(finish_deployment(site).pk))
    page.reload()
    expect(page.locator("#deliveries")).to_contain_text("email: olive@example.test")
    expect(page.locator("#deliveries tr", has_text="webhook")).to_contain_text("failed")


def test_the_site_list_pages_searches_and_filters(browse, team):
    org, owner, _ = team
    OrganizationQuota.objects.filter(organization=org).update(
        max_sites=100, max_memory_mb=10**6, max_cpu_percent=10**6, max_disk_mb=10**9
    )
    for n in range(53):
        make_site(org, name=f"Site {n:02d}", slug=f"site-{n:02d}")
    make_site(org, name="Static one", slug="static-one", site_type="static", image="")
    page = browse(owner).page
    page.goto("/o/acme/")
    rows = page.locator("#sites tbody tr")
    expect(rows).to_have_count(50)
    expect(page.get_by_text("54 in all")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(rows).to_have_count(4)
    expect(rows.last).to_contain_text("Static one")
    page.get_by_label("Search").fill("site-07")
    expect(rows).to_have_count(1)
    page.get_by_label("Search").fill("")
    page.get_by_label("Type").select_option("static")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("static")


def test_keyboard_focus_is_visible_and_status_messages_are_announced(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/sites/web/env/")
    page.get_by_label("Key", exact=True).focus()
    page.keyboard.press("Tab")  # to the value field, by keyboard
    outline = page.evaluate(
        "getComputedStyle(document.activeElement).outlineStyle + ' ' + "
        "getComputedStyle(document.activeElement).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    assert page.locator("#env-add .status").get_attribute("aria-live") == "polite"
    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => !e.labels?.length && !e.getAttribute('aria-label')).map(e => e.id || e.name)"
    )
    assert unlabeled == []


def test_an_admin_invites_and_the_invitee_accepts_in_a_second_browser(browse, team):
    _, owner, _ = team
    invitee = make_user("sam@example.test")
    admin_page = browse(owner).page
    admin_page.goto("/o/acme/members/")
    admin_page.get_by_label("Email").fill("sam@example.test")
    admin_page.get_by_role("button", name="Send invitation").click()
    link = admin_page.locator("#invite-link code").inner_text()
    assert "/invitations/" in link

    sam = browse(invitee).page  # another browser context, signed in as the invitee
    sam.goto(link)
    expect(sam.get_by_text("invited sam@example.test")).to_be_visible()
    sam.get_by_role("button", name="Accept and join").click()
    sam.wait_for_url("**/o/acme/")
    admin_page.reload()
    expect(admin_page.locator("#members")).to_contain_text("sam@example.test")
    expect(admin_page.locator("#invitations tr", has_text="sam@example.test")).to_contain_text(
        "accepted"
    )


def test_an_ended_session_sends_the_next_action_to_sign_in(browse, team):
    org, owner, _ = team
    make_site(org, name="Web", slug="web")
    page = browse(owner).page
    page.goto("/o/acme/sites/web/env/")
    page.wait_for_load_state("networkidle")
    UserSession.objects.all().delete()  # signed out in another tab, or expired
    page.get_by_label("Key", exact=True).fill("X")
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"/login/\?next=%2Fo%2Facme%2Fsites%2Fweb%2Fenv%2F$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_no_page_shows_null_undefined_or_a_raw_float(browse, team):
    org, owner, _ = team
    site = make_site(org, name="Web", slug="web")
    UsageSample.objects.create(
        site=site,
        organization=org,
        docker_id="c1",
        cpu_percent=12.345678901234,
        memory_bytes=123456789,
    )
    page = browse(owner).page
    for section in ("", "deployments/", "usage/", "limits/", "env/", "settings/"):
        page.goto(f"/o/acme/sites/web/{section}")
        page.wait_for_load_state("networkidle")
        text = page.locator("main").inner_text()
        for bad in ("null", "undefined", "NaN", "[object Object]"):
            assert bad not in text, f"{section}: {bad!r} on the page"
        assert not re.search(r"\d\.\d{5,}", text), f"{section}: an unformatted number"
