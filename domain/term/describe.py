"""What an expression means, in English and in Chinese, for a merchant."""

from __future__ import annotations

import itertools

from domain.term.expression import DAY_SECONDS, DayWindow, TermExpression
from domain.term.fields import LAST, Field
from domain.term.kinds import TermKind

_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAYS_ZH = ("一", "二", "三", "四", "五", "六", "日")
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def describe(e: TermExpression, language: str = "en") -> str:
    """A sentence for people; `language` is "en" or "zh"."""
    zh = language == "zh"
    kind = e.kind
    if kind is TermKind.IMMEDIATE:
        return "立即" if zh else "immediately"
    if kind is TermKind.DELAY:
        return _delay(e, zh)
    if kind is TermKind.FIXED_PERIOD:
        return _period(e, zh)
    if kind is TermKind.CRON:
        return _cron(e, zh)
    days = _days(e, zh)
    window = _window(e.day_window, zh)
    limits = _limits(e, zh)
    if zh:
        text = f"{limits}{days}" + (f" {window}" if window else "")
    else:
        text = days + (f" {window}" if window else "") + (f" {limits}" if limits else "")
    if kind.is_birthday:
        text += _birthday(e, zh)
    return text


def _days(e: TermExpression, zh: bool) -> str:
    if e.kind is TermKind.WEEKLY:
        days = sorted(e.day_of_week.values())
        if zh:
            return "每周" + "、".join(f"周{_WEEKDAYS_ZH[d - 1]}" for d in days).replace("周", "", 1)
        return "every " + _join([_WEEKDAYS_EN[d - 1] for d in days])
    if e.kind is TermKind.MONTHLY:
        values = sorted(v for v in e.day_of_month.values() if v != LAST)
        last = LAST in e.day_of_month.values()
        if zh:
            parts = [f"{v}日" for v in values] + (["最后一天"] if last else [])
            return "每月" + "、".join(parts)
        if not values:
            return "on the last day of every month"
        parts = [str(v) for v in values] + (["the last day"] if last else [])
        noun = "day" if len(values) == 1 and not last else "days"
        return f"on {noun} {_join(parts)} of every month"
    return "每天" if zh else "every day"


def _window(w: DayWindow, zh: bool) -> str:
    if w.whole_day:
        return ""
    if w.is_point:
        return _clock(w.start) if zh else f"at {_clock(w.start)}"
    end = _clock(w.end % DAY_SECONDS) if w.end != DAY_SECONDS else "24:00"
    overnight = w.end > DAY_SECONDS
    if zh:
        return f"{_clock(w.start)} 至{'次日 ' if overnight else ' '}{end}"
    return f"from {_clock(w.start)} to {end}" + (" the next day" if overnight else "")


def _limits(e: TermExpression, zh: bool) -> str:
    months = [] if e.month.any else sorted(e.month.values())
    years = "" if e.year.any else _field_text(e.year)
    if len(years) > 40:  # a long stepped list: say the pattern instead
        values = sorted(e.year.values())
        gaps = {b - a for a, b in itertools.pairwise(values)}
        first, last = values[0], values[-1]
        if len(gaps) == 1:
            step = gaps.pop()
            years = f"{first}-{last}, 每{step}年" if zh else f"every {step} years of {first}-{last}"
        else:
            years = f"{len(values)}个指定年份" if zh else f"{len(values)} chosen years"
    if zh:
        return (f"{years}年" if years and years[-1].isdigit() else years) + "、".join(
            f"{m}月" for m in months
        )
    named = _join([_MONTHS_EN[m - 1] for m in months])
    if named and years:
        return f"in {named} {years}"
    return f"in {named or years}" if (named or years) else ""


def _birthday(e: TermExpression, zh: bool) -> str:
    ahead = e.days_ahead
    if zh:
        scope = {
            TermKind.BIRTHDAY_DAY: "生日当天",
            TermKind.BIRTHDAY_WEEK: "生日所在周",
            TermKind.BIRTHDAY_MONTH: "生日所在月",
        }[e.kind]
        return f"，面向{scope}的会员" + (f"（提前{ahead}天）" if ahead else "")
    scope = {
        TermKind.BIRTHDAY_DAY: "whose birthday is that day",
        TermKind.BIRTHDAY_WEEK: "whose birthday falls in that week",
        TermKind.BIRTHDAY_MONTH: "whose birthday falls in that month",
    }[e.kind]
    return f", for members {scope}" + (
        f", {ahead} day{'s' if ahead != 1 else ''} ahead" if ahead else ""
    )


def _delay(e: TermExpression, zh: bool) -> str:
    total = int(e.delay.total_seconds())
    days, rest = divmod(total, DAY_SECONDS)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units_zh = (("天", days), ("小时", hours), ("分钟", minutes), ("秒", seconds))
    units_en = (("day", days), ("hour", hours), ("minute", minutes), ("second", seconds))
    if zh:
        return "延迟" + "".join(f"{n}{u}" for u, n in units_zh if n) + "后"
    parts = [f"{n} {u}{'s' if n != 1 else ''}" for u, n in units_en if n]
    return " ".join(parts) + " after the start"


def _period(e: TermExpression, zh: bool) -> str:
    start, end = e.period
    whole_days = start.time().isoformat() == "00:00:00" and end.time().isoformat() == "00:00:00"
    if whole_days:
        from datetime import timedelta

        last = (end - timedelta(days=1)).date().isoformat()
        first = start.date().isoformat()
        return f"{first} 至 {last}（全天）" if zh else f"from {first} to {last}, whole days"
    fmt = "%Y-%m-%d %H:%M:%S"
    return (
        f"{start.strftime(fmt)} 至 {end.strftime(fmt)}"
        if zh
        else f"from {start.strftime(fmt)} until {end.strftime(fmt)}"
    )


def _cron(e: TermExpression, zh: bool) -> str:
    fields = " ".join(
        f.format() for f in (e.second, e.minute, e.hour, e.day_of_month, e.month, e.day_of_week)
    )
    limits = _limits(e, zh)
    if zh:
        return f"{limits}按 cron 时刻（秒 分 时 日 月 周：{fields}）触发"
    return f"at the cron instants (second minute hour day month weekday: {fields})" + (
        f" {limits}" if limits else ""
    )


def _field_text(f: Field) -> str:
    """The values of a field as runs: "2024, 2026-2028"."""
    values = sorted(f.values())
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
