/** Filters kept in the query string, so a filtered page can be linked, reloaded and gone back to. */
import type { FormEvent } from "react";
import { navigate } from "./router.js";

/** The named fields of a query string, trimmed; absent ones are empty. */
export function readFilters<F extends string>(
  search: string,
  fields: readonly F[],
): Record<F, string> {
  const params = new URLSearchParams(search);
  const filters = {} as Record<F, string>;
  for (const field of fields) filters[field] = params.get(field)?.trim() ?? "";
  return filters;
}

/** A datetime-local value ("2026-05-01T09:30") as local time in ms, or undefined when blank. */
export function localTime(value: string): number | undefined {
  if (!value) return undefined;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** A form's submit handler that moves to `path` with the form's non-blank fields as its query. */
export function applyFilters(path: string) {
  return (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(event.currentTarget)) {
      if (typeof value === "string" && value.trim()) params.set(key, value.trim());
    }
    const query = params.toString();
    navigate(query ? `${path}?${query}` : path);
  };
}
