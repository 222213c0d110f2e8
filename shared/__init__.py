"""Code shared by every Lambda function of the SugarCRM ⇄ Xero connector.

Rooms: ``models`` (what arrives and what is sent), ``mapping`` (pure CRM ⇄ Xero functions),
``xero`` and ``sugar`` (HTTP adapters), ``state`` and ``queue`` (AWS adapters), ``usecases``
(the work, taking adapters as arguments) and ``api`` (HTTP routing shared by the handlers).
"""
