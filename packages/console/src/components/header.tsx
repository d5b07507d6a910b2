import { type LiveStatus, useLiveStatus } from "../live.js";
import { Link } from "./link.js";

const sections = [
  { to: "/", label: "Inbox" },
  { to: "/history", label: "History" },
  { to: "/audit", label: "Audit" },
  { to: "/rules", label: "Rules" },
];

const liveText: Record<LiveStatus, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Live updates paused",
};

function current(pathname: string, to: string): boolean {
  if (to === "/") return pathname === "/" || pathname.startsWith("/requests/");
  return pathname === to || pathname.startsWith(`${to}/`);
}

export function Header({
  email,
  pathname,
  onSignOut,
  signingOut,
}: {
  email: string;
  pathname: string;
  onSignOut: () => void;
  signingOut: boolean;
}) {
  const live = useLiveStatus();
  return (
    <header className="header">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <div className="header-inner">
        <Link to="/" className="brand">
          Airlock
        </Link>
        <nav aria-label="Sections">
          <ul className="nav">
            {sections.map((section) => (
              <li key={section.to}>
                <Link
                  to={section.to}
                  aria-current={current(pathname, section.to) ? "page" : undefined}
                >
                  {section.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span className={`live live-${live}`} title="Whether this page updates by itself">
            {liveText[live]}
          </span>
          <span className="email" title="Signed in as">
            {email}
          </span>
          <button type="button" className="secondary" onClick={onSignOut} disabled={signingOut}>
            {signingOut ? "Signing out…" : "Sign out"}
          </button>
        </div>
      </div>
    </header>
  );
}
