"""The portal benchmark's data set: one community at fleet scale, built set-based in PostgreSQL.

10 sites × 1,000 chargers (one outlet each), 2,000 drivers with a card each, 1,000,000
sessions spread over the last 365 days (round robin over the chargers, so the newest 3,000 —
one per charger — are still in progress), meter samples for the newest sessions and a few OCPP
frames per charger; rules of use, refusals and an audit log (`MANAGEMENT_STEPS`); the first
site's power management (load balancing, every charger managed, a few non-compliant, an hour
of power samples: its Power page). Every large table is filled by one `INSERT … SELECT …
generate_series` statement (never the ORM row by row): about a minute on these machines. The few rows with
logic (community, price, the manager) go through the ORM."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

SLUG = "fleet"
MANAGER_PHONE = "+33600000001"


# What a manager's other pages list at fleet scale: rules of use (a rule on every site, 500
# outlets with their own, a group of 200 people, 300 personal limits, 20,000 refusals) and
# 100,000 audit entries. Separate so that `python -m bench.portal --reuse` can add them to a
# database kept by an older version (`add_management_data`).
MANAGEMENT_STEPS = [
    (
        "site rules",
        """INSERT INTO rules_accesspolicy (mode, updated_at, community_id, site_id)
           SELECT CASE WHEN s.id %% 2 = 0 THEN 'members' ELSE 'chosen' END, %(now)s, %(c)s, s.id
           FROM communities_site s WHERE s.community_id = %(c)s""",
    ),
    (
        "outlet rules",
        """INSERT INTO rules_accesspolicy (mode, updated_at, community_id, connector_id)
           SELECT 'nobody', %(now)s, %(c)s, k.id FROM chargers_connector k
           WHERE k.community_id = %(c)s AND k.id %% 20 = 0""",
    ),
    (
        "group",
        """INSERT INTO rules_usergroup (name, created_at, community_id)
           VALUES ('Bureaux', %(now)s, %(c)s)""",
    ),
    (
        "group members",
        """INSERT INTO rules_usergroup_members (usergroup_id, user_id)
           SELECT g.id, u.id FROM rules_usergroup g, accounts_user u
           WHERE g.community_id = %(c)s AND u.phone LIKE '+3361%%' AND u.id %% 10 = 0""",
    ),
    (
        "chosen groups",
        """INSERT INTO rules_accesspolicy_groups (accesspolicy_id, usergroup_id)
           SELECT p.id, g.id FROM rules_accesspolicy p, rules_usergroup g
           WHERE p.community_id = %(c)s AND p.mode = 'chosen' AND g.community_id = %(c)s""",
    ),
    (
        "limits",
        """INSERT INTO rules_usagelimit (monthly_kwh, session_minutes, community_id, user_id)
           SELECT 300, 240, %(c)s, u.id FROM accounts_user u
           WHERE u.phone LIKE '+3361%%' AND u.id %% 7 = 0 LIMIT 300""",
    ),
    (
        "refusals",
        """INSERT INTO rules_ruleevent (kind, reason, action, at, evse_id, uid, charger_id,
             community_id, holder_id, session_id)
           SELECT 'refused', 'outside_hours', 'Authorize', %(now)s - make_interval(mins => n),
             1, 'FC' || lpad(n::text, 8, '0'),
             (SELECT min(id) FROM chargers_charger WHERE community_id = %(c)s) + n %% 1000,
             %(c)s, NULL, NULL
           FROM generate_series(1, 20000) n""",
    ),
    (
        "audit log",
        """INSERT INTO communities_auditevent (action, target, data, at, actor_id, community_id)
           SELECT CASE n %% 3 WHEN 0 THEN 'member.add' WHEN 1 THEN 'rule.policy'
                  ELSE 'charger.update' END, 'target ' || n, '{}',
             %(now)s - make_interval(mins => n), (SELECT id FROM accounts_user
             WHERE phone = %(manager)s), %(c)s
           FROM generate_series(1, 100000) n""",
    ),
]


def add_management_data(community_id: int, log=print) -> None:
    """`MANAGEMENT_STEPS` on a kept database that has none of it yet."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM rules_accesspolicy WHERE community_id = %s", [community_id])
        if cursor.fetchone():
            return
        params = {"c": community_id, "now": timezone.now(), "manager": MANAGER_PHONE}
        for name, sql in MANAGEMENT_STEPS:
            cursor.execute(sql, params)
            log(f"  {name}: {cursor.rowcount:,} rows")
        cursor.execute("ANALYZE")


# The first site's power management: a 3 × 400 A connection with load balancing, every charger
# managed (16 A limit, a third drawing it, about ten non-compliant) and an hour of
# samples every 30 s.
_POWER_SQL = [
    """
INSERT INTO power_sitepower (community_id, site_id, phases, voltage_v, limit_a, margin_a,
                             load_balancing, solar, solar_minimum, peak_shaving, sharing,
                             updated_at)
  VALUES (%(c)s, %(site)s, 3, 230, 400, 0, true, false, false, false, 'equal', %(now)s)""",
    """
INSERT INTO power_chargerpower (community_id, charger_id, wiring, min_a, max_a, limit_a,
                                limit_at, limit_transaction, outlet_limits, failsafe_a,
                                draw_a, draw_at, outlet_obedience, non_compliant_since)
  SELECT %(c)s, ch.id, 'l1l2l3', 6, 32, 16, %(now)s, '', '{}', 6,
         CASE WHEN ch.id %% 3 = 0 THEN 16 END, %(now)s, '{}',
         CASE WHEN ch.id %% 1000 < 10 THEN %(now)s END
    FROM chargers_charger ch WHERE ch.site_id = %(site)s""",
    """
INSERT INTO power_powersample (community_id, site_id, at, grid_w, chargers_w, limit_w, failsafe)
  SELECT %(c)s, %(site)s, %(now)s - make_interval(secs => 30 * s), 150000 + 1000 * (s %% 7),
         100000, 276000, false
    FROM generate_series(0, 119) s""",
]


def build(
    *,
    chargers: int = 10_000,
    sites: int = 10,
    users: int = 2_000,
    sessions: int = 1_000_000,
    active: int = 3_000,
    days: int = 365,
    log=print,
) -> dict[str, int]:
    """Fill the (migrated, empty) database. Returns the ids the benchmark visits."""
    from django_scopes import scopes_disabled

    from accounts.models import User
    from billing.models import Price
    from communities.models import Community, Membership, Role

    active = min(active, chargers, sessions)
    now = timezone.now().replace(microsecond=0)
    with scopes_disabled():  # the bench builds a whole tenant, like a fixture
        community = Community.objects.create(
            name="Fleet Company", slug=SLUG, address="1 avenue de la Flotte\n75001 Paris"
        )
        Price.objects.create(community=community, valid_from="2020-01-01", price_per_kwh="0.2516")
        manager = User.objects.create_user(phone=MANAGER_PHONE, first_name="Manon", last_name="M")
        Membership.objects.create(community=community, user=manager, role=Role.MANAGER)
    p = {
        "c": community.pk,
        "chargers": chargers,
        "sites": sites,
        "users": users,
        "sessions": sessions,
        "active": active,
        "now": now,
        "span": timedelta(days=days).total_seconds(),
        "samples_from": max(sessions - 1_000, 0),
        "manager": MANAGER_PHONE,
    }
    steps = [
        (
            "sites",
            """INSERT INTO communities_site (name, address, created_at, community_id)
               SELECT 'Site ' || lpad(s::text, 2, '0'), s || ' rue du Parc', %(now)s, %(c)s
               FROM generate_series(1, %(sites)s) s""",
        ),
        (
            "users",
            """INSERT INTO accounts_user (password, is_superuser, phone, first_name, last_name,
                 email, language, is_active, is_staff, date_joined, country)
               SELECT '!', false, '+3361' || lpad(u::text, 7, '0'), 'Driver' || u, 'Fleet',
                 'driver' || u || '@fleet.example', 'fr', true, false, %(now)s, 'FR'
               FROM generate_series(1, %(users)s) u""",
        ),
        (
            "memberships",
            """INSERT INTO communities_membership (role, state, created_at, community_id, user_id)
               SELECT 'individual', 'active', %(now)s, %(c)s, id FROM accounts_user
               WHERE phone LIKE '+3361%%'""",
        ),
        (
            "cards",
            """INSERT INTO chargers_chargecard (uid, name, active, created_at, community_id,
                 holder_id)
               SELECT 'FC' || lpad(id::text, 8, '0'), 'Card ' || id, true, %(now)s, %(c)s, id
               FROM accounts_user WHERE phone LIKE '+3361%%'""",
        ),
        (
            "chargers",
            """INSERT INTO chargers_charger (identity, name, vendor, model, password_hash,
                 ocpp_version, firmware_version, reported_vendor, reported_model,
                 reported_serial, connected, connected_since, connection_changed_at, last_seen,
                 heartbeat_interval, firmware_status, configuration, created_at, community_id,
                 site_id, from_inventory, gateway, updated_at)
               SELECT 'FLEET-' || lpad(n::text, 5, '0'), '', 'other', '', '',
                 CASE WHEN n %% 2 = 0 THEN '2.0.1' ELSE '1.6' END, '', '', '', '',
                 n %% 10 <> 7, %(now)s, %(now)s, %(now)s, 300, '', '{}', %(now)s, %(c)s,
                 (SELECT id FROM communities_site WHERE community_id = %(c)s
                  ORDER BY id OFFSET (n - 1) %% %(sites)s LIMIT 1),
                 false, '', %(now)s
               FROM generate_series(1, %(chargers)s) n""",
        ),
        (
            "outlets",
            """INSERT INTO chargers_connector (evse_id, connector_id, status, error_code,
                 status_at, charger_id, community_id)
               SELECT 1, 1, CASE WHEN ch.rn > %(chargers)s - %(active)s THEN 'Charging'
                                 WHEN ch.rn %% 100 = 3 THEN 'Faulted' ELSE 'Available' END,
                 CASE WHEN ch.rn %% 100 = 3 THEN 'GroundFailure' ELSE 'NoError' END,
                 %(now)s, ch.id, %(c)s
               FROM (SELECT id, row_number() OVER (ORDER BY id) rn FROM chargers_charger
                     WHERE community_id = %(c)s) ch""",
        ),
        (
            "sessions",
            # Session i (0-based) on charger i mod N, started (N-i)/N of the span ago; the
            # newest `active` are in progress. Energy 2–32 kWh, cost at 0.2516 €/kWh.
            """WITH ch AS (SELECT array_agg(c.id ORDER BY c.id) ids,
                                  array_agg(k.id ORDER BY c.id) outlets
                           FROM chargers_charger c JOIN chargers_connector k ON k.charger_id = c.id
                           WHERE c.community_id = %(c)s),
                    us AS (SELECT array_agg(u.id ORDER BY u.id) ids,
                                  array_agg(k.id ORDER BY u.id) cards
                           FROM accounts_user u JOIN chargers_chargecard k ON k.holder_id = u.id
                           WHERE u.phone LIKE '+3361%%'),
                    s AS (SELECT i, %(now)s - make_interval(
                                   secs => (%(sessions)s - i) * %(span)s / %(sessions)s) AS t0,
                                 2000 + (i * 7717) %% 30000 AS wh,
                                 i >= %(sessions)s - %(active)s AS running
                          FROM generate_series(0::bigint, %(sessions)s - 1) i)
               INSERT INTO chargers_chargingsession (transaction_id, id_tag, state, started_at,
                 stopped_at, meter_start_wh, meter_stop_wh, meter_last_wh, meter_last_at,
                 energy_wh, price_per_kwh, cost, stop_reason, offline, updated_at, card_id,
                 charger_id, community_id, holder_id, connector_id, anomaly)
               SELECT 'T' || s.i, 'FC' || lpad(us.ids[1 + (s.i %% %(users)s)::int]::text, 8, '0'),
                 CASE WHEN running THEN 'active' ELSE 'completed' END, t0,
                 CASE WHEN running THEN NULL ELSE t0 + make_interval(mins => (30 + s.i %% 300)::int) END,
                 0, CASE WHEN running THEN NULL ELSE wh END,
                 CASE WHEN running THEN wh / 4 END, CASE WHEN running THEN %(now)s END,
                 CASE WHEN running THEN 0 ELSE wh END, 0.2516,
                 CASE WHEN running THEN 0 ELSE round(wh * 0.2516 / 1000, 2) END,
                 CASE WHEN running THEN '' ELSE 'EVDisconnected' END, false, t0,
                 us.cards[1 + (s.i %% %(users)s)::int], ch.ids[1 + (s.i %% %(chargers)s)::int], %(c)s,
                 us.ids[1 + (s.i %% %(users)s)::int], ch.outlets[1 + (s.i %% %(chargers)s)::int], ''
               FROM s, ch, us""",
        ),
        (
            "meter samples",
            # The newest 1,000 sessions: an energy register and a power reading every 5 min
            # over 4 hours (the session page's curve).
            """INSERT INTO chargers_metersample (timestamp, measurand, phase, context, value,
                 unit, community_id, session_id)
               SELECT s.started_at + make_interval(mins => 5 * k), m.measurand, '',
                 'Sample.Periodic', CASE WHEN m.measurand = 'Power.Active.Import'
                 THEN 7400 ELSE 616.7 * k END, 'W' || CASE WHEN m.measurand =
                 'Power.Active.Import' THEN '' ELSE 'h' END, %(c)s, s.id
               FROM (SELECT id, started_at FROM chargers_chargingsession
                     WHERE community_id = %(c)s ORDER BY started_at DESC LIMIT 1000) s,
                    generate_series(0, 48) k,
                    (VALUES ('Energy.Active.Import.Register'), ('Power.Active.Import')) m(measurand)""",
        ),
        (
            "OCPP log",
            """INSERT INTO chargers_ocppmessage (direction, message_type, unique_id, action,
                 payload, at, charger_id, community_id)
               SELECT CASE WHEN k %% 2 = 0 THEN 'in' ELSE 'out' END, 2 + k %% 2,
                 c.id || '-' || k, 'Heartbeat', '{}', %(now)s - make_interval(mins => k), c.id,
                 %(c)s
               FROM chargers_charger c, generate_series(0, 9) k WHERE c.community_id = %(c)s""",
        ),
        *MANAGEMENT_STEPS,
    ]
    with connection.cursor() as cursor:
        for name, sql in steps:
            began = time.perf_counter()
            cursor.execute(sql, p)
            log(f"  {name}: {cursor.rowcount:,} rows in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        cursor.execute("ANALYZE")
        log(f"  ANALYZE in {time.perf_counter() - began:.1f} s")
        cursor.execute(
            """SELECT (SELECT id FROM communities_site WHERE community_id = %(c)s
                       ORDER BY id LIMIT 1),
                      (SELECT id FROM chargers_charger WHERE community_id = %(c)s
                       ORDER BY id LIMIT 1),
                      (SELECT m.id FROM communities_membership m JOIN accounts_user u
                         ON u.id = m.user_id WHERE u.phone LIKE '+3361%%' ORDER BY m.id LIMIT 1),
                      (SELECT id FROM chargers_chargingsession WHERE community_id = %(c)s
                       ORDER BY started_at DESC LIMIT 1 OFFSET 5)""",
            p,
        )
        site, charger, member, session = cursor.fetchone()
        began = time.perf_counter()
        for sql in _POWER_SQL:
            cursor.execute(sql, {**p, "site": site})
        log(f"  power of the first site in {time.perf_counter() - began:.1f} s")
    return {
        "community": community.pk,
        "manager": manager.pk,
        "site": site,
        "charger": charger,
        "member": member,
        "session": session,
    }
