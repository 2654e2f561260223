"""The console's words in English and French; the language comes from a cookie, else Accept-Language."""

from __future__ import annotations

__all__ = ["LANGS", "MESSAGES", "pick_lang", "translate"]

LANGS = ("en", "fr")

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (English, French)
    "title": ("veille — crisis console", "veille — console de crise"),
    "nav.alerts": ("Alerts", "Alertes"),
    "nav.silences": ("Silences", "Silences"),
    "nav.live": ("Live", "En direct"),
    "nav.search": ("Search", "Recherche"),
    "nav.watches": ("Watches", "Veilles"),
    "overview.title": ("Overview", "Vue d'ensemble"),
    "overview.no_watch": ("No such watch.", "Veille introuvable."),
    "overview.volume": (
        "Mentions per bucket, against the detector's baseline",
        "Mentions par intervalle, face à la référence du détecteur",
    ),
    "overview.mentions": ("Mentions", "Mentions"),
    "overview.baseline": ("Baseline", "Référence"),
    "overview.alerts": ("Alerts", "Alertes"),
    "overview.share": ("Sentiment share", "Répartition de la tonalité"),
    "overview.negative_pct": ("Negative %", "% négatif"),
    "overview.positive_pct": ("Positive %", "% positif"),
    "overview.top.stories": ("Top stories", "Histoires principales"),
    "overview.top.sources": ("Sources", "Sources"),
    "overview.top.sites": ("Sites", "Sites"),
    "overview.top.terms": ("Terms", "Termes"),
    "overview.total": ("Total", "Total"),
    "overview.custom": ("custom", "personnalisée"),
    "overview.live": ("Live", "En direct"),
    "overview.apply": ("Show", "Afficher"),
    "search.until": ("Until", "Jusqu'à"),
    "search.title": ("Search mentions", "Rechercher des mentions"),
    "search.query": ("Query", "Requête"),
    "search.query_help": (
        'as in watches: "Acme Corp" AND (recall OR rappel) NOT stock*',
        'comme les veilles : "Acme Corp" AND (recall OR rappel) NOT stock*',
    ),
    "search.since": ("Since (7d, 24h or a date)", "Depuis (7d, 24h ou une date)"),
    "search.submit": ("Search", "Rechercher"),
    "search.export": ("Export these results as CSV", "Exporter ces résultats en CSV"),
    "search.none": ("No mention found.", "Aucune mention trouvée."),
    "search.more": ("More results", "Plus de résultats"),
    "nav.logout": ("Log out", "Se déconnecter"),
    "nav.lang": ("Français", "English"),
    "login.title": ("Log in", "Connexion"),
    "login.name": ("Name", "Nom"),
    "login.password": ("Password", "Mot de passe"),
    "login.submit": ("Log in", "Se connecter"),
    "login.failed": ("Wrong name or password.", "Nom ou mot de passe incorrect."),
    "login.throttled": (
        "Too many failed attempts; try again in a few minutes.",
        "Trop d'essais manqués ; réessayez dans quelques minutes.",
    ),
    "local.notice": (
        "No accounts are set up: this console answers on this machine only, and you act as 'local'.",
        "Aucun compte n'est créé : cette console ne répond que sur cette machine, "
        "et vous agissez en tant que « local ».",
    ),
    "alerts.title": ("Alerts", "Alertes"),
    "alerts.none": ("No alerts yet.", "Aucune alerte pour l'instant."),
    "alerts.watch": ("Watch", "Veille"),
    "alerts.kind": ("Kind", "Type"),
    "alerts.raised": ("Raised", "Levée"),
    "alerts.state": ("State", "État"),
    "alerts.assignee": ("Assigned to", "Assignée à"),
    "state.open": ("open", "ouverte"),
    "state.acknowledged": ("acknowledged", "prise en compte"),
    "state.resolved": ("resolved", "résolue"),
    "kind.negative_mention": ("negative mention", "mention négative"),
    "kind.volume_spike": ("volume spike", "pic de volume"),
    "kind.negative_spike": ("negative spike", "pic négatif"),
    "alert.explanation": ("Why it fired", "Pourquoi elle s'est déclenchée"),
    "alert.observed": ("Observed", "Observé"),
    "alert.expected": ("Baseline", "Référence"),
    "alert.negative_share": ("Negative share", "Part négative"),
    "alert.mentions": ("Mentions", "Mentions"),
    "alert.top_terms": ("Top terms", "Termes principaux"),
    "alert.top_sources": ("Top sources", "Sources principales"),
    "alert.samples": ("Sample mentions", "Exemples de mentions"),
    "alert.history": ("History", "Historique"),
    "alert.no_history": ("Nothing done yet.", "Aucune action pour l'instant."),
    "alert.acknowledge": ("Acknowledge", "Prendre en compte"),
    "alert.assign": ("Assign", "Assigner"),
    "alert.assign_to": ("Person", "Personne"),
    "alert.comment": ("Comment", "Commenter"),
    "alert.comment_text": ("Comment", "Commentaire"),
    "alert.resolve": ("Resolve", "Résoudre"),
    "alert.silence": ("Silence like this…", "Mettre en silence…"),
    "alert.not_found": ("No such alert.", "Alerte introuvable."),
    "alert.ack_note": (
        "Acknowledging stops the notifier's repeats for this group until the alert is resolved.",
        "Prendre en compte arrête les relances du notificateur pour ce groupe jusqu'à la résolution.",
    ),
    "action.acknowledge": ("acknowledged", "a pris en compte"),
    "action.assign": ("assigned to", "a assigné à"),
    "action.comment": ("commented", "a commenté"),
    "action.resolve": ("resolved", "a résolu"),
    "action.silence": ("silenced", "a mis en silence"),
    "silences.title": ("Silences", "Silences"),
    "silences.none": ("No silences.", "Aucun silence."),
    "silences.matchers": ("Matchers", "Critères"),
    "silences.ends": ("Ends", "Fin"),
    "silences.state": ("State", "État"),
    "silences.by": ("By", "Par"),
    "silences.comment": ("Comment", "Commentaire"),
    "silences.expire": ("Expire", "Expirer"),
    "silences.new": ("New silence", "Nouveau silence"),
    "silences.duration": ("Duration (e.g. 2h, 30m)", "Durée (ex. 2h, 30m)"),
    "silences.create": ("Create", "Créer"),
    "silences.matchers_help": (
        'One matcher per line, e.g. watch="acme"',
        'Un critère par ligne, ex. watch="acme"',
    ),
    "silence.active": ("active", "actif"),
    "silence.pending": ("pending", "à venir"),
    "silence.expired": ("expired", "expiré"),
    "live.title": ("Live mentions", "Mentions en direct"),
    "live.watches": ("Pick a watch", "Choisissez une veille"),
    "live.overview": ("overview", "vue d'ensemble"),
    "live.waiting": ("Waiting for mentions…", "En attente de mentions…"),
    "live.sentiment": ("Sentiment", "Tonalité"),
    "live.lang": ("Language", "Langue"),
    "live.source": ("Source", "Source"),
    "live.story": ("Story size", "Taille de l'histoire"),
    "live.open": ("Open", "Ouvrir"),
    "live.wrong": ("Sentiment wrong? Should be", "Tonalité erronée ? Devrait être"),
    "live.corrected": ("Correction saved", "Correction enregistrée"),
    "sentiment.negative": ("negative", "négatif"),
    "sentiment.neutral": ("neutral", "neutre"),
    "sentiment.positive": ("positive", "positif"),
    "correct.submit": ("Correct", "Corriger"),
    "error.forbidden": (
        "Your role may not do this (a responder may).",
        "Votre rôle ne le permet pas (un intervenant le peut).",
    ),
    "error.csrf": (
        "This form expired or did not come from the console; reload the page and try again.",
        "Ce formulaire a expiré ou ne vient pas de la console ; rechargez la page et réessayez.",
    ),
    "error.bad_input": ("That did not work:", "Cela n'a pas marché :"),
    "role": ("Role", "Rôle"),
    "role.viewer": ("viewer", "lecteur"),
    "role.responder": ("responder", "intervenant"),
    "role.admin": ("admin", "administrateur"),
    "nav.users": ("Users", "Utilisateurs"),
    "error.admin_only": (
        "Only an administrator may do this.",
        "Seul un administrateur peut le faire.",
    ),
    "login.disabled": (
        "This account is disabled; ask an administrator.",
        "Ce compte est désactivé ; adressez-vous à un administrateur.",
    ),
    "sso.no_role": (
        "Your single sign-on groups give you no role in this console; ask an administrator.",
        "Vos groupes d'authentification unique ne vous donnent aucun rôle dans cette console ; "
        "adressez-vous à un administrateur.",
    ),
    "sso.local_account": (
        "A local account already has this name, so single sign-on cannot use it; ask an administrator.",
        "Un compte local porte déjà ce nom : l'authentification unique ne peut pas l'utiliser ; "
        "adressez-vous à un administrateur.",
    ),
    "users.title": ("Users", "Utilisateurs"),
    "users.help": (
        "Who may use the console. Viewers read; responders also act on alerts, silences and corrections; "
        "administrators also manage accounts. A change applies at the person's next page.",
        "Qui peut utiliser la console. Les lecteurs consultent ; les intervenants agissent aussi sur les alertes, "
        "les silences et les corrections ; les administrateurs gèrent aussi les comptes. "
        "Un changement s'applique à la page suivante de la personne.",
    ),
    "users.source.local": ("local account", "compte local"),
    "users.source.sso": ("single sign-on", "authentification unique"),
    "users.active": ("active", "actif"),
    "users.disabled": ("disabled", "désactivé"),
    "users.created": ("Created", "Créé le"),
    "users.last_login": ("last login", "dernière connexion"),
    "users.never": ("never", "jamais"),
    "users.change_role": ("Change role", "Changer le rôle"),
    "users.disable": ("Disable", "Désactiver"),
    "users.enable": ("Enable", "Réactiver"),
    "users.sso_role": (
        "Role set by the identity provider's groups.",
        "Rôle fixé par les groupes du fournisseur d'identité.",
    ),
    "users.yourself": (
        "Your own account: another administrator may change it.",
        "Votre propre compte : un autre administrateur peut le modifier.",
    ),
    "users.not_yourself": (
        "You cannot change your own role or disable yourself; ask another administrator.",
        "Vous ne pouvez pas changer votre propre rôle ni vous désactiver ; demandez à un autre administrateur.",
    ),
    "users.not_found": ("No such account.", "Compte introuvable."),
    "users.history": ("Changes to accounts", "Modifications des comptes"),
    "users.action.add": ("added", "a ajouté"),
    "users.action.update": ("updated", "a mis à jour"),
    "users.action.role": ("changed the role of", "a changé le rôle de"),
    "users.action.disable": ("disabled", "a désactivé"),
    "users.action.enable": ("enabled", "a réactivé"),
    "users.action.password": ("reset the password of", "a réinitialisé le mot de passe de"),
}


def translate(lang: str, key: str) -> str:
    """The text of ``key`` in ``lang`` (the key itself when it is unknown, so a gap shows)."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "fr" else pair[0]


def pick_lang(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if set, else the best of Accept-Language's (q weights honoured), else English."""
    if cookie in LANGS:
        return cookie
    best, best_q = "en", -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if primary in LANGS and q > 0 and q - position * 1e-6 > best_q:
            best, best_q = primary, q - position * 1e-6
    return best
