-- The floor: one hand-written DuckDB query over the same landing files that computes the same
-- channel x geo x day mart (spend, delivery, platform conversions, consented tracked ad clicks).
-- No quarantine, no lineage, no tests, no PII hashing: the least work that gives the numbers.
-- {landing} is replaced by the landing folder.
with
fx as (select "date"::date as d, currency, usd_per_unit from read_csv('{landing}/fx/*.csv', header = true)),
campaigns as (select campaign_id::varchar as campaign_id, channel from read_csv('{landing}/reference/campaigns.csv', header = true, all_varchar = true)),
ev as (
    select * from read_json('{landing}/events/date=*/*.jsonl', format = 'newline_delimited', ignore_errors = true,
        columns = {event_id: 'VARCHAR', event_type: 'VARCHAR', event_ts: 'VARCHAR', campaign_id: 'VARCHAR',
                   geo: 'VARCHAR', consent_string: 'VARCHAR'})
    where event_id is not null
),
dedup as (select * from ev qualify row_number() over (partition by event_id) = 1),
tracked as (
    select (event_ts::timestamptz at time zone 'UTC')::date as date_day, c.channel, e.geo, count(*) as tracked_ad_clicks
    from dedup e join campaigns c using (campaign_id)
    where e.event_type = 'ad_click'
      and coalesce(try(get_bit(from_base64(rpad(replace(replace(split_part(e.consent_string, '.', 1), '-', '+'), '_', '/'),
              (ceil(length(split_part(e.consent_string, '.', 1)) / 4) * 4)::int, '='))::bit, 152)) = 1, false)
      and coalesce(try(get_bit(from_base64(rpad(replace(replace(split_part(e.consent_string, '.', 1), '-', '+'), '_', '/'),
              (ceil(length(split_part(e.consent_string, '.', 1)) / 4) * 4)::int, '='))::bit, 158)) = 1, false)
    group by all
),
google as (
    select "segments.date"::date as date_day, "campaign.id"::varchar as campaign_id, "segments.geo_target_region" as geo,
           "metrics.cost_micros" / 1e6 as spend_usd, "metrics.impressions" as impressions, "metrics.clicks" as clicks,
           "metrics.conversions" as conversions, "metrics.conversions_value" as value_usd
    from read_csv('{landing}/google_ads/*.csv', header = true, types = {'campaign.id': 'VARCHAR', 'metrics.cost_micros': 'BIGINT'})
    where "metrics.cost_micros" >= 0
),
meta_rows as (select unnest(data) as r from read_json('{landing}/meta_ads/*.json', maximum_object_size = 1000000000)),
meta as (
    select (r.date_start)::date as date_day, r.campaign_id::varchar as campaign_id, r.region as geo,
           r.spend::decimal(18, 2) * fx.usd_per_unit as spend_usd, r.impressions::bigint as impressions,
           r.clicks::bigint as clicks, coalesce(r.actions[1].value::double, 0) as conversions,
           coalesce(r.action_values[1].value::double, 0) * fx.usd_per_unit as value_usd
    from meta_rows join fx on fx.d = r.date_start::date and fx.currency = r.account_currency
    where try_cast(r.spend as decimal(18, 2)) >= 0
),
offline as (
    select "date"::date as date_day, campaign_id::varchar as campaign_id, geo, spend::double as spend_usd,
           0 as impressions, 0 as clicks, 0 as conversions, 0 as value_usd
    from read_csv('{landing}/offline_media/*.csv', header = true, all_varchar = true)
    where try_cast(spend as double) >= 0
),
spend as (
    select s.date_day, c.channel, s.geo, sum(spend_usd) as spend_usd, sum(impressions) as impressions,
           sum(clicks) as clicks, sum(conversions) as platform_conversions, sum(value_usd) as platform_conversion_value_usd
    from (select * from google union all select * from meta union all select * from offline) s
    join campaigns c using (campaign_id)
    group by all
)
select coalesce(s.date_day, t.date_day) as date_day, coalesce(s.channel, t.channel) as channel,
       coalesce(s.geo, t.geo) as geo, coalesce(s.spend_usd, 0) as spend_usd,
       coalesce(s.impressions, 0) as impressions, coalesce(s.clicks, 0) as clicks,
       coalesce(s.platform_conversions, 0) as platform_conversions,
       coalesce(s.platform_conversion_value_usd, 0) as platform_conversion_value_usd,
       coalesce(t.tracked_ad_clicks, 0) as tracked_ad_clicks
from spend s full outer join tracked t using (date_day, channel, geo)
