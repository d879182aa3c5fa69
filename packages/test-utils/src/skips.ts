/**
 * The one place where a backend may opt out of a spec, with the reason. `spec` matches a substring of
 * "<suite name> > <spec name>". Keep this list short and every reason concrete.
 */
export interface BackendSkip {
  backend: string;
  spec: string;
  reason: string;
}

export const BACKEND_SKIPS: readonly BackendSkip[] = [];
