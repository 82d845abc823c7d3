/**
 * HTTP-dates (RFC 9110 5.6.7) as a recipient must accept them, strictly: the three forms,
 * names as written (or, as a cache reads Expires and Date, in any case), the zone "GMT".
 * Portable: no Node.js API.
 */

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].join("|");
const LONG_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const MONTH = MONTHS.join("|");
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";
/** The three HTTP-date forms, with names matched as written (`""`) or in any case (`"i"`). */
function dateForms(flags: "" | "i") {
  return {
    /** RFC 9110 5.6.7: IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`. */
    imf: new RegExp(`^(?:${DAYS}), (\\d{2}) (${MONTH}) (\\d{4}) ${TIME} GMT$`, flags),
    /** The obsolete RFC 850 form, `Sunday, 06-Nov-94 08:49:37 GMT`. */
    rfc850: new RegExp(
      `^(?:${LONG_DAYS.join("|")}), (\\d{2})-(${MONTH})-(\\d{2}) ${TIME} GMT$`,
      flags,
    ),
    /** The obsolete asctime form, `Sun Nov  6 08:49:37 1994`. */
    asctime: new RegExp(`^(?:${DAYS}) (${MONTH}) ( \\d|\\d{2}) ${TIME} (\\d{4})$`, flags),
  };
}
type DateForms = ReturnType<typeof dateForms>;
const EXACT_CASE = dateForms("");
const ANY_CASE = dateForms("i");

/**
 * An HTTP-date (RFC 9110 5.6.7) in epoch ms, or undefined when it is none of the three
 * forms a recipient must accept: names are case-sensitive, the spacing is exact, the zone
 * is "GMT". A two-digit year more than 50 years ahead of `now` is in the last century.
 */
export function parseHttpDate(value: string, now = Date.now()): number | undefined {
  return dateValue(value, now, EXACT_CASE);
}

/**
 * An HTTP-date as a cache reads one for freshness (Expires, Date): RFC 9111 4.2 has a cache
 * recipient match it case-insensitively (`THU`, `AUG`, `gmt`), though RFC 9110 5.6.7 makes
 * the names case-sensitive. Spacing and the zone stay strict: "UTC" is still invalid.
 */
export function parseCacheDate(value: string, now = Date.now()): number | undefined {
  return dateValue(value, now, ANY_CASE);
}

function dateValue(value: string, now: number, forms: DateForms): number | undefined {
  const parts = dateParts(value, now, forms);
  if (!parts) return undefined;
  const { day, month, year, time } = parts;
  const [h, min, s] = time.map(Number) as [number, number, number];
  const mon = MONTHS.indexOf(month[0]!.toUpperCase() + month.slice(1).toLowerCase());
  const d = Number(day);
  // A leap second (:60) is valid syntax; it counts as the next second.
  if (h > 23 || min > 59 || s > 60 || d < 1) return undefined;
  const ms = Date.UTC(year, mon, d, h, min, s);
  // No 31 Feb: Date.UTC would roll it over into March.
  return new Date(Date.UTC(year, mon, d)).getUTCDate() === d ? ms : undefined;
}

/** The fields of whichever HTTP-date form `value` is in, the year in four digits. */
function dateParts(
  value: string,
  now: number,
  forms: DateForms,
): { day: string; month: string; year: number; time: string[] } | undefined {
  const imf = forms.imf.exec(value);
  if (imf) return { day: imf[1]!, month: imf[2]!, year: Number(imf[3]), time: imf.slice(4, 7) };
  const rfc850 = forms.rfc850.exec(value);
  if (rfc850) {
    const thisYear = new Date(now).getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(rfc850[3]);
    if (year > thisYear + 50) year -= 100;
    return { day: rfc850[1]!, month: rfc850[2]!, year, time: rfc850.slice(4, 7) };
  }
  const asc = forms.asctime.exec(value);
  if (asc)
    return { day: asc[2]!.trim(), month: asc[1]!, year: Number(asc[6]), time: asc.slice(3, 6) };
  return undefined;
}
