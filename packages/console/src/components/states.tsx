/** What a page shows while loading, when a load failed, and when there is nothing to show. */
import type { ReactNode } from "react";
import { ApiError, currentPath, loginUrl } from "../api.js";

export function Loading({ what = "Loading…" }: { what?: string }) {
  return (
    <p className="loading" role="status" aria-live="polite">
      {what}
    </p>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <p className="empty-title">{title}</p>
      {children}
    </div>
  );
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return "Something went wrong.";
}

/** A failed load, with the way out that fits: sign in again, reload, or retry. */
export function ErrorState({
  error,
  onRetry,
  title = "Could not load this",
}: {
  error: unknown;
  onRetry?: () => void;
  title?: string;
}) {
  const code = error instanceof ApiError ? error.code : undefined;
  return (
    <div className="alert alert-error" role="alert">
      <p className="alert-title">{code === "unauthenticated" ? "You are signed out" : title}</p>
      <p>{errorMessage(error)}</p>
      {code === "unauthenticated" ? (
        <a className="button" href={loginUrl(currentPath())}>
          Sign in
        </a>
      ) : code === "forbidden" ? (
        <button type="button" onClick={() => window.location.reload()}>
          Reload the page
        </button>
      ) : onRetry ? (
        <button type="button" onClick={onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}
